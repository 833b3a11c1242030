"""PyTorch eager: the reference, and its CUDA and float64 variants."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend, Subject


class TorchEager(Backend):
    name = "torch"
    needs_onnx = False
    runs_the_model = True
    device = "cpu"
    description = "PyTorch eager on CPU (the reference)"

    def prepare(self, subject: Subject) -> Any:
        return subject

    def run(self, session: Subject, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        # A copy per run: a forward that writes into its inputs must not change the probe for the next backend.
        tensors = [torch.from_numpy(np.array(feeds[n], copy=True, order="C")).to(self.device)
                   for n in session.input_names]
        with torch.inference_mode():
            outputs = session.call(*tensors)
        return [to_numpy(t) for t in outputs]


class TorchCuda(TorchEager):
    name = "torch-cuda"
    device = "cuda"
    runs_the_model = False  # runs a copy moved to the GPU
    description = "PyTorch eager on CUDA"
    settings = ("tf32",)

    def unavailable_reason(self) -> str | None:
        import torch

        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no usable GPU"
            return f"torch {torch.__version__} is {build}: torch.cuda.is_available() is False"
        return None

    def prepare(self, subject: Subject) -> Any:
        import copy

        cuda_subject = copy.copy(subject)
        cuda_subject.module = copy.deepcopy(subject.module).to("cuda")
        cuda_subject.call = subject.call.rebind(cuda_subject.module)
        return cuda_subject

    def run(self, session: Subject, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        if "tf32" not in self.options:
            return super().run(session, feeds)
        flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.options["tf32"] == "1"
        try:
            return super().run(session, feeds)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags

    def providers(self, session: Any) -> list[str]:
        import torch

        return [f"cuda:{torch.cuda.get_device_name(0)}"]


class TorchFloat64(TorchEager):
    """The reference model in float64: the oracle that tells float noise from error."""

    name = "torch-fp64"
    runs_the_model = False  # runs a float64 copy
    description = "PyTorch eager on CPU in float64 (the oracle)"

    def prepare(self, subject: Subject) -> Any:
        import copy

        oracle = copy.copy(subject)
        oracle.module = copy.deepcopy(subject.module).double()
        oracle.call = subject.call.rebind(oracle.module)
        return oracle

    def run(self, session: Subject, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        wide = {k: v.astype(np.float64) if v.dtype.kind == "f" or str(v.dtype) == "bfloat16" else v
                for k, v in feeds.items()}
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # tensors the forward creates itself follow
        try:
            return super().run(session, wide)
        finally:
            torch.set_default_dtype(previous)


def to_numpy(tensor: Any) -> np.ndarray:
    """A detached CPU numpy copy; bfloat16 goes through ml_dtypes so no value changes."""
    import torch

    tensor = tensor.detach().to("cpu")
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.resolve_conj().resolve_neg().numpy().copy()
