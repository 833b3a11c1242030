"""ONNX Runtime on CPU and on CUDA."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend, BackendUnavailable, Control, Subject


OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


class OrtCpu(Backend):
    name = "ort-cpu"
    provider = "CPUExecutionProvider"
    description = "ONNX Runtime, CPU execution provider"
    settings = ("exporter", "transform", "opt", "threads")
    setting_values = {"opt": tuple(OPT_LEVELS)}
    setting_defaults = {"opt": "all", "threads": "auto"}

    @classmethod
    def declared_controls(cls, module: Any = None) -> list[Control]:
        # A provider with a tf32 setting (ORT's CUDA provider, or a subclass that adds one) uses TF32 by default.
        tf32 = [Control("tf32", "0", f"does the gap close with TF32 off? ({cls.name} uses TF32 by default)",
                        rule="tf32_control", closes="tf32", accepted=True)] if "tf32" in cls.settings else []
        return [*tf32, Control("opt", "disable", "does an ORT graph optimization change {name}'s result?",
                               rule="optimizer_control", closes="ort-optimizer", order="last")]

    def unavailable_reason(self) -> str | None:
        try:
            import onnxruntime
        except ImportError as exc:
            return f"onnxruntime is not installed ({exc}); pip install onnxruntime (or onnxruntime-gpu)"
        if self.provider not in onnxruntime.get_available_providers():
            return (
                f"onnxruntime {onnxruntime.__version__} has no {self.provider} "
                f"(available: {', '.join(onnxruntime.get_available_providers())})"
            )
        return None

    def session_options(self) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        if "opt" in self.options:
            options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, OPT_LEVELS[self.options["opt"]])
        return options

    def provider_list(self) -> list[Any]:
        return [self.provider]

    def session_for(self, model_bytes: bytes, opt: str | None = None, disabled: list[str] | None = None) -> Any:
        """A session on ``model_bytes`` with this candidate's options, at optimization level ``opt`` and with the
        named graph transformers ``disabled`` (localization's optimizer bisection)."""
        import onnxruntime

        options = self.session_options()
        if opt is not None:
            options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, OPT_LEVELS[opt])
        extra = {"disabled_optimizers": disabled} if disabled else {}
        return onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=self.provider_list(), **extra)

    def prepare(self, subject: Subject) -> Any:
        session = self.session_for(subject.onnx_bytes)
        actual = session.get_providers()
        if not actual or actual[0] != self.provider:
            raise BackendUnavailable(
                f"asked onnxruntime for {self.provider} but the session runs on {', '.join(actual) or 'nothing'}; "
                "ONNX Runtime fell back silently, so these results would not be from this provider"
            )
        return session

    def run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        graph_inputs = [i.name for i in session.get_inputs()]
        return [np.asarray(o) for o in session.run(None, {name: feeds[name] for name in graph_inputs})]

    def providers(self, session: Any) -> list[str]:
        return list(session.get_providers())


class OrtCuda(OrtCpu):
    name = "ort-cuda"
    provider = "CUDAExecutionProvider"
    device = "cuda"
    description = "ONNX Runtime, CUDA execution provider"
    settings = OrtCpu.settings + ("tf32",)
    setting_values = {**OrtCpu.setting_values, "tf32": ("0", "1")}
    setting_defaults = {**OrtCpu.setting_defaults, "tf32": "default"}

    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()
        if reason and "not installed" not in reason:
            import onnxruntime

            return (
                f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider "
                f"(available: {', '.join(onnxruntime.get_available_providers())}); "
                "install onnxruntime-gpu instead of onnxruntime on a machine with an NVIDIA GPU"
            )
        return reason

    def provider_list(self) -> list[Any]:
        # The CPU provider stays as ORT's fallback for nodes CUDA lacks; prepare() checks
        # that CUDA itself was loaded rather than silently dropped.
        cuda_options = {"device_id": 0}
        if "tf32" in self.options:
            cuda_options["use_tf32"] = self.options["tf32"]  # ORT enables TF32 by default
        return [(self.provider, cuda_options), "CPUExecutionProvider"]
