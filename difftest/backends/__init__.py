"""Backends registered by name; one table, no if/elif chain."""

from __future__ import annotations

from .base import Backend, BackendUnavailable, Subject
from .onnxruntime import OrtCpu, OrtCuda
from .torch_eager import TorchCuda, TorchEager, TorchFloat64

REGISTRY: dict[str, type[Backend]] = {
    cls.name: cls for cls in (TorchEager, OrtCpu, OrtCuda, TorchCuda, TorchFloat64)
}

DEFAULT_BACKENDS = ("torch", "ort-cpu", "ort-cuda")
REFERENCE = "torch"
ORACLE = "torch-fp64"


def make(name: str, threads: int | None = None) -> Backend:
    return REGISTRY[name](threads=threads)


__all__ = ["Backend", "BackendUnavailable", "Subject", "REGISTRY", "DEFAULT_BACKENDS", "REFERENCE", "ORACLE", "make"]
