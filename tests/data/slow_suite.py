"""Four slow, ordinary cases: a run of them can be killed half way and resumed."""

import time

import torch

from difftest import case


class Slow(torch.nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        if not torch.jit.is_tracing():
            time.sleep(0.4)
        return torch.tanh(x * self.factor)


def make(factor):
    def factory():
        g = torch.Generator().manual_seed(factor)
        return Slow(factor).eval(), (torch.randn(4, 5, generator=g),)
    return factory


for _factor in range(1, 5):
    case(make(_factor), name=f"slow_{_factor}", exporter="torchscript")
