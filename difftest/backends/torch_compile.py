"""The PyTorch model compiled: ``torch-compile`` (``torch.compile``, Inductor by default; ``torch-compile-cuda`` on the
GPU) and ``torch-export`` (the program ``torch.export`` captures, the first step of the dynamo ONNX exporter, run as
a module).

``torch-compile`` settings: ``mode`` (default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs),
``dynamic`` (auto | 0 | 1: ``torch.compile(dynamic=None|False|True)``) and ``backend`` (inductor | aot_eager | eager).
A failing ``torch-compile`` gets ``backend=aot_eager`` as its automatic control: Dynamo's capture and AOTAutograd
without Inductor's code generation. When it agrees with eager Inductor is blamed; when it fails the same way, Dynamo
(the capture). Each case compiles afresh (``torch._dynamo.reset()`` before the case and in teardown), so one case's
compiled graphs and guards cannot reach the next; Inductor's on-disk caches make warm runs cheaper. Inductor on CPU
needs a C++ compiler. Opt-in (not a default backend): compiling takes seconds per case.

``torch-export`` runs ``torch.export.export(..., strict=False)`` (what ``torch.onnx.export(dynamo=True)`` tries first)
at each probe's shapes and calls ``ExportedProgram.module()``. As a control of a failing dynamo-exported ONNX candidate
it tells the capture from the ONNX translation: when the captured program already computes what the ONNX graph
computes, blame says ``torch.export``; when it agrees with eager, the ONNX translation. It captures static shapes per
probe, so it judges the operators, not the dynamic-shape guards (shape specialization is the ONNX candidates' finding).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from .base import Backend, Control, Subject
from .torch_eager import TorchCuda, TorchEager

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")


def _reset_dynamo() -> None:
    import torch

    torch._dynamo.reset()


class TorchCompile(TorchEager):
    name = "torch-compile"
    description = "torch.compile (Inductor) on CPU, the PyTorch model compiled"
    settings = ("mode", "dynamic", "backend")
    setting_values = {"mode": MODES, "dynamic": ("auto", "0", "1"), "backend": COMPILE_BACKENDS}
    setting_defaults = {"mode": "default", "dynamic": "auto", "backend": "inductor"}
    localize_instead = (
        "torch-compile runs the PyTorch model, not an ONNX graph: there is no ONNX node to localize. "
        "Its aot_eager control (torch-compile[backend=aot_eager]) tells Dynamo's capture from "
        "Inductor's code generation; to find the kernel, rerun with TORCH_COMPILE_DEBUG=1 or "
        "TORCHDYNAMO_REPRO_AFTER=aot TORCHDYNAMO_REPRO_LEVEL=4 (torch's accuracy minifier)"
    )

    @classmethod
    def declared_controls(cls, module: Any = None) -> list[Control]:
        return [
            Control(
                "backend",
                "aot_eager",
                "does the gap close without Inductor's code generation (Dynamo's capture and AOTAutograd, "
                "run eagerly: backend=aot_eager)?",
                rule="compile_control",
                closes="inductor",
                persists="dynamo",
            )
        ]

    def unavailable_reason(self) -> str | None:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is a dependency
            return f"torch cannot be imported ({exc})"
        if not hasattr(torch, "compile"):
            return f"torch {torch.__version__} has no torch.compile (it needs torch 2.0 or newer)"
        if self.options.get("backend", "inductor") == "inductor" and not _cpp_compiler():
            return (
                "Inductor on CPU needs a C++ compiler and none was found (CXX, g++, c++, clang++); install one "
                "(apt-get install g++), or use torch-compile[backend=aot_eager]"
            )
        return None

    def prepare(self, subject: Subject) -> Any:
        import copy

        compiled = copy.copy(subject)
        compiled.call = compile_call(subject.call, self.options)
        return compiled

    def teardown(self, session: Any) -> None:
        _reset_dynamo()


def compile_call(call: Any, options: dict[str, str]) -> Any:
    """``call`` compiled with a candidate's torch.compile settings, after a Dynamo reset (nothing a previous case
    compiled or guarded on is reused)."""
    import torch

    _reset_dynamo()
    dynamic = {"auto": None, "0": False, "1": True}[options.get("dynamic", "auto")]
    backend = options.get("backend", "inductor")
    settings: dict[str, Any] = {"backend": backend, "dynamic": dynamic}
    mode = options.get("mode", "default")
    if mode != "default" and backend == "inductor":
        settings["mode"] = mode
    return torch.compile(call, **settings)


class TorchCompileCuda(TorchCuda):
    """``torch-compile-cuda``: the model moved to CUDA as ``torch-cuda`` runs it, then compiled (Inductor's Triton
    kernels by default). The same settings as ``torch-compile`` plus ``tf32``; a failing candidate gets the
    ``backend=aot_eager`` control (Inductor against Dynamo) and the ``tf32=0`` one."""

    name = "torch-compile-cuda"
    description = "torch.compile (Inductor) on CUDA, the PyTorch model moved to the GPU and compiled"
    settings = ("mode", "dynamic", "backend", "tf32")
    setting_values = {**TorchCompile.setting_values, "tf32": ("0", "1")}
    setting_defaults = {**TorchCompile.setting_defaults, "tf32": "default"}
    localize_instead = TorchCompile.localize_instead.replace("torch-compile", "torch-compile-cuda")

    @classmethod
    def declared_controls(cls, module: Any = None) -> list[Control]:
        tf32 = [c for c in super().declared_controls(module) if c.rule == "tf32_control"]
        return [*tf32, *TorchCompile.declared_controls()]

    def unavailable_reason(self) -> str | None:
        reason = TorchCuda.unavailable_reason(self)
        if reason:
            return reason
        if self.options.get("backend", "inductor") == "inductor":
            try:
                from torch.utils._triton import has_triton
            except ImportError:  # pragma: no cover - torch without the helper
                return None
            if not has_triton():
                return (
                    "Inductor on CUDA generates Triton kernels and triton is not importable here (pip install "
                    "triton, which CUDA builds of torch normally bring), or use torch-compile-cuda[backend=aot_eager]"
                )
        return None

    def prepare(self, subject: Subject) -> Any:
        placed = super().prepare(subject)
        placed.call = compile_call(placed.call, self.options)
        return placed

    def teardown(self, session: Any) -> None:
        _reset_dynamo()


def _cpp_compiler() -> str | None:
    for candidate in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


class TorchExport(Backend):
    name = "torch-export"
    needs_onnx = False
    runs_the_model = False  # exports and runs the captured program, not the module
    description = "the program torch.export captures (the dynamo ONNX exporter's first step), run as a module"
    localize_instead = (
        "torch-export runs the program torch.export captured, not an ONNX graph: there is no ONNX "
        "node to localize. Compare its FX nodes with eager's (ExportedProgram.module() under "
        "torch.fx.Interpreter), which is what localizing an ONNX candidate against eager does"
    )

    def unavailable_reason(self) -> str | None:
        import torch

        if not hasattr(torch, "export"):
            return f"torch {torch.__version__} has no torch.export (it needs torch 2.1 or newer)"
        return None

    def prepare(self, subject: Subject) -> Any:
        return _Captured(subject)

    def run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        from ..suite.model_io import to_numpy

        tensors = tuple(torch.from_numpy(np.array(feeds[n], copy=True, order="C")) for n in session.live_names)
        program = session.program(tensors)
        with torch.inference_mode():
            outputs = program(*tensors)
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        return [to_numpy(t) for t in outputs]

    def teardown(self, session: Any) -> None:
        session.programs.clear()
        _reset_dynamo()


class _Captured:
    """The captured programs of one subject, one per distinct set of input shapes (static capture)."""

    def __init__(self, subject: Subject):
        self.flat = subject.call.for_export() if hasattr(subject.call, "for_export") else subject.call
        self.live_names = list(getattr(subject.call, "live_names", subject.input_names))
        self.programs: dict[Any, Any] = {}

    def program(self, tensors: tuple) -> Any:
        import torch

        key = tuple((tuple(t.shape), str(t.dtype)) for t in tensors)
        if key not in self.programs:
            _reset_dynamo()
            try:
                exported = torch.export.export(self.flat, tensors, strict=False)
            except Exception:
                exported = torch.export.export(self.flat, tensors, strict=True)  # what the ONNX exporter tries next
            self.programs[key] = exported.module()
        return self.programs[key]
