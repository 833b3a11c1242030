"""The runtimes a case runs on, registered by name in one table (no if/elif chain): PyTorch eager on CPU and CUDA and
in float64 (the oracle), ONNX Runtime's CPU, CUDA and TensorRT providers, the ONNX reference evaluator, OpenVINO's
CPU plugin, torch.compile on CPU and CUDA, and torch.export (opt-in); and the candidate specs that pick one with its
settings (``candidates``: ``ort-cuda[tf32=0]``).

May import: record, suite, export.
"""

from __future__ import annotations

from .base import Backend, BackendUnavailable, Subject
from .onnx_reference import OnnxReference
from .onnxruntime import OrtCpu, OrtCuda, OrtTensorRT
from .openvino import OpenVino
from .torch_compile import TorchCompile, TorchCompileCuda, TorchExport
from .torch_eager import TorchCuda, TorchEager, TorchFloat64

REGISTRY: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (
        TorchEager,
        OrtCpu,
        OrtCuda,
        TorchCuda,
        TorchFloat64,
        OnnxReference,
        OpenVino,
        TorchCompile,
        TorchExport,
        OrtTensorRT,
        TorchCompileCuda,
    )
}

# The candidates a run gets unless told otherwise: every CPU runtime cheap enough to run every night (OpenVINO's
# CPU plugin included: recorded as skipped with the reason where it is not installed), ORT's CUDA provider where
# there is one. torch-compile (seconds of compilation per case) and torch-export are opt-in.
DEFAULT_BACKENDS = ("torch", "ort-cpu", "ort-cuda", "openvino")
# What difftest.check and the pytest fixture run on one model unless told: ONNX Runtime, CPU and CUDA (the runtimes
# most PyTorch models ship to; a user's test that should cover OpenVINO or torch.compile names them).
DEFAULT_CHECK_CANDIDATES = ("ort-cpu", "ort-cuda")
REFERENCE = "torch"
ORACLE = "torch-fp64"


__all__ = [
    "Backend",
    "BackendUnavailable",
    "Subject",
    "REGISTRY",
    "DEFAULT_BACKENDS",
    "DEFAULT_CHECK_CANDIDATES",
    "REFERENCE",
    "ORACLE",
]
