import torch

from difftest import case


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


@case(exporter="torchscript")
def double():
    return Double().eval(), (torch.ones(2, 2),)
