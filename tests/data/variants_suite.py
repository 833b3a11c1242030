import torch

from difftest import case


class FloorDivide(torch.nn.Module):
    def forward(self, a):
        return (a * 7) // 3


@case(exporter="torchscript")
def floor_divide():
    """`//` on negative integers: the TorchScript exporter's graph truncates, eager floors."""
    return FloorDivide().eval(), (torch.arange(-6, 6).reshape(3, 4),)
