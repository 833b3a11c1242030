"""Cases whose generated probes can break the model's own contract."""

import torch

from difftest import case


class FixedLength(torch.nn.Module):
    def forward(self, frames):
        if frames.shape[-1] != 12:
            raise ValueError(f"expects 12 frames, got {frames.shape[-1]}")
        return frames.mean(-1)


@case(exporter="torchscript", dynamic_axes={"frames": {2: "time"}})
def declared_dynamic_but_fixed():
    """The time axis is declared dynamic, but the model only takes 12 frames."""
    return FixedLength().eval(), (torch.randn(2, 3, 12),)


class Positive(torch.nn.Module):
    def forward(self, scale):
        if (scale <= 0).any():
            raise ValueError("scale must be positive")
        return torch.log(scale)


@case(exporter="torchscript", probes=["base", "alt"])
def needs_positive_scale():
    """Eager refuses non-positive scales; the 'alt' probe draws around the base mean and may break that."""
    return Positive().eval(), (torch.rand(64) * 0.2 + 0.01,)
