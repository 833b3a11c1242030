"""Backends registered by name; one table, no if/elif chain."""

from __future__ import annotations

from typing import Any

from .base import Backend, BackendUnavailable, Subject
from .onnx_reference import OnnxReference
from .onnxruntime import OrtCpu, OrtCuda
from .torch_eager import TorchCuda, TorchEager, TorchFloat64

REGISTRY: dict[str, type[Backend]] = {
    cls.name: cls for cls in (TorchEager, OrtCpu, OrtCuda, TorchCuda, TorchFloat64, OnnxReference)
}

DEFAULT_BACKENDS = ("torch", "ort-cpu", "ort-cuda")
REFERENCE = "torch"
ORACLE = "torch-fp64"


def make(spec: Any, threads: int | None = None) -> Backend:
    """A backend from a name, a candidate spec string (``ort-cpu[opt=disable]``) or a Candidate."""
    from ..candidates import Candidate, parse

    candidate = spec if isinstance(spec, Candidate) else parse(str(spec))
    return REGISTRY[candidate.backend](threads=threads, options=dict(candidate.settings))


__all__ = ["Backend", "BackendUnavailable", "Subject", "REGISTRY", "DEFAULT_BACKENDS", "REFERENCE", "ORACLE", "make"]
