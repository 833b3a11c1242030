"""ONNX Runtime on CPU, on CUDA and through its TensorRT execution provider."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend, BackendUnavailable, Control, Subject


# TensorRT's precisions (ort-trt's ``precision`` setting) and each reduced one's own tolerance (torch.testing's
# defaults for the dtype): a gap that closes at fp32 is held to it (judge.precision).
TRT_PRECISIONS = ("fp32", "fp16", "bf16")
TRT_PRECISION_RTOL = {"fp16": 1e-3, "bf16": 1.6e-2}
OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


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
        tf32 = (
            [
                Control(
                    "tf32",
                    "0",
                    f"does the gap close with TF32 off? ({cls.name} uses TF32 by default)",
                    rule="tf32_control",
                    closes="tf32",
                    accepted=True,
                )
            ]
            if "tf32" in cls.settings
            else []
        )
        return [
            *tf32,
            Control(
                "opt",
                "disable",
                "does an ORT graph optimization change {name}'s result?",
                rule="optimizer_control",
                closes="ort-optimizer",
                order="last",
            ),
        ]

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
            options.graph_optimization_level = getattr(
                onnxruntime.GraphOptimizationLevel, OPT_LEVELS[self.options["opt"]]
            )
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


class OrtTensorRT(OrtCuda):
    """ONNX Runtime's TensorRT execution provider (``ort-trt``): TensorRT engines for the subgraphs it takes, CUDA and
    then CPU for the rest, as ORT places them. Checked against the session's actual providers like ``ort-cuda``: a
    session where TensorRT was dropped (no TensorRT libraries, a failed engine build) is a skip, never a result.

    ``precision``: ``fp32`` (the provider's default), ``fp16`` (``trt_fp16_enable``) or ``bf16``
    (``trt_bf16_enable``). A failing candidate at a reduced precision gets ``precision=fp32`` as its automatic control,
    read like OpenVINO's (``precision:fp16`` blamed, the result held to that precision's own tolerance). TensorRT
    builds float32 layers with TF32 on Ampere and later unless ``NVIDIA_TF32_OVERRIDE=0`` is in the environment
    before CUDA starts; ORT exposes no per-session switch for it, so ``ort-trt`` has no ``tf32`` setting (compare it
    with ``ort-cuda[tf32=0]`` to see TF32's share). Engines are not cached between cases."""

    name = "ort-trt"
    provider = "TensorrtExecutionProvider"
    description = "ONNX Runtime, TensorRT execution provider (CUDA and CPU for what TensorRT does not take)"
    settings = OrtCpu.settings + ("precision",)
    setting_values = {**OrtCpu.setting_values, "precision": tuple(TRT_PRECISIONS)}
    setting_defaults = {**OrtCpu.setting_defaults, "precision": "fp32"}

    @classmethod
    def declared_controls(cls, module: Any = None) -> list[Control]:
        return [
            Control(
                "precision",
                "fp32",
                "does the gap close with TensorRT at float32 (fp16/bf16 off)?",
                rule="precision_control",
                closes="precision:{value}",
                tolerances=tuple(TRT_PRECISION_RTOL.items()),
            ),
            *super().declared_controls(module),
        ]

    def unavailable_reason(self) -> str | None:
        reason = OrtCpu.unavailable_reason(self)
        if reason and "not installed" not in reason:
            import onnxruntime

            return (
                f"onnxruntime {onnxruntime.__version__} has no TensorrtExecutionProvider (available: "
                f"{', '.join(onnxruntime.get_available_providers())}); it needs onnxruntime-gpu and TensorRT's "
                "libraries (pip install tensorrt) on a machine with an NVIDIA GPU"
            )
        return reason

    def provider_list(self) -> list[Any]:
        precision = self.options.get("precision", "fp32")
        trt_options: dict[str, Any] = {"device_id": 0, "trt_engine_cache_enable": False}
        if precision != "fp32":  # only the option asked for: an older provider may not know trt_bf16_enable
            trt_options[f"trt_{precision}_enable"] = True
        return [(self.provider, trt_options), ("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
