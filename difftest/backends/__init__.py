"""Backends registered by name; one table, no if/elif chain."""

from __future__ import annotations

from .base import Backend, BackendUnavailable, Subject
from .onnxruntime import OrtCpu, OrtCuda
from .torch_eager import TorchCuda, TorchEager

REGISTRY: dict[str, type[Backend]] = {
    cls.name: cls for cls in (TorchEager, OrtCpu, OrtCuda, TorchCuda)
}

DEFAULT_BACKENDS = ("torch", "ort-cpu", "ort-cuda")
REFERENCE = "torch"


def make(name: str, threads: int | None = None) -> Backend:
    return REGISTRY[name](threads=threads)


__all__ = ["Backend", "BackendUnavailable", "Subject", "REGISTRY", "DEFAULT_BACKENDS", "REFERENCE", "make"]
