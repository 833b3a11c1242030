"""OpenVINO on its CPU plugin, running the same exported ONNX graph as ONNX Runtime (``openvino``, the PyPI package;
``pip install 'difftest[openvino]'``, installed by ``make``).

Settings: ``precision`` (``f32`` | ``bf16`` | ``f16``: the plugin's ``INFERENCE_PRECISION_HINT``) and ``threads``
(``INFERENCE_NUM_THREADS``). Without ``precision`` the plugin chooses: on a CPU with bfloat16 instructions (AVX512-BF16,
AMX) it infers in **bf16** by default, so a model that is fine at float32 can show large differences. The inference
precision the compiled model actually used is recorded with the run (its ``providers``), and a failing OpenVINO
candidate gets ``openvino[precision=f32]`` as an automatic control: blame then says whether the precision made the
difference (``precision:bf16``), with both distances to the float64 oracle. It is never counted as float noise: the
model is not accurate at the runtime's default precision, and that is what a deployment at the default gets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend, BackendUnavailable, Control, Subject

PRECISIONS = ("f32", "bf16", "f16")
# Each reduced precision's own tolerance (torch.testing's defaults for the dtype, about four units of roundoff):
# a result that differs at float32 tolerance but is within this one is reduced_precision, beyond it a discrepancy.
PRECISION_RTOL = {"bf16": 1.6e-2, "f16": 1e-3}
PRECISION_PREFIX = "inference precision "  # in the providers a run records: "inference precision bf16"


class OpenVino(Backend):
    name = "openvino"
    description = "OpenVINO, CPU plugin (the exported ONNX graph through OpenVINO's ONNX frontend)"
    settings = ("exporter", "transform", "threads", "precision")
    setting_values = {"precision": PRECISIONS}
    setting_defaults = {"threads": "auto", "precision": "default"}

    @classmethod
    def declared_controls(cls, module: Any = None) -> list[Control]:
        return [
            Control(
                "precision",
                "f32",
                "does the gap close at float32? (OpenVINO's CPU plugin infers in bf16 by default on CPUs "
                "with bfloat16 instructions: INFERENCE_PRECISION_HINT)",
                rule="precision_control",
                closes="precision:{value}",
                tolerances=tuple(PRECISION_RTOL.items()),
            )
        ]

    @classmethod
    def recorded_setting(cls, setting: str, providers: Any) -> str | None:
        return recorded_precision(providers) if setting == "precision" else None

    def unavailable_reason(self) -> str | None:
        try:
            import openvino
        except ImportError as exc:
            return (
                f"openvino is not installed ({exc}); pip install openvino (the difftest[openvino] extra, which "
                "`make` installs)"
            )
        try:
            devices = openvino.Core().available_devices
        except Exception as exc:  # a broken install: say so, never raise
            return f"openvino {getattr(openvino, '__version__', '?')} cannot start: {type(exc).__name__}: {exc}"
        if "CPU" not in devices:
            return f"openvino {openvino.__version__} has no CPU plugin here (devices: {', '.join(devices) or 'none'})"
        return None

    def config(self) -> dict[str, str]:
        config = {}
        if "precision" in self.options:
            config["INFERENCE_PRECISION_HINT"] = self.options["precision"]
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = str(self.threads)
        return config

    def prepare(self, subject: Subject) -> Any:
        import onnx
        import openvino

        if subject.onnx_bytes is None:
            raise BackendUnavailable("openvino runs an ONNX graph and this subject has none")
        core = openvino.Core()
        model = core.read_model(subject.onnx_bytes, b"")
        compiled = core.compile_model(model, "CPU", self.config())
        graph = onnx.load_from_string(subject.onnx_bytes).graph
        return _Session(compiled, [i.name for i in graph.input], [o.name for o in graph.output])

    def run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = session.compiled.create_infer_request()
        inputs = {name: np.asarray(feeds[name], order="C") for name in session.inputs if name in feeds}  # keeps 0-d
        request.infer(inputs)
        outputs = []
        for index, name in enumerate(session.outputs):
            port = session.port(name, index)
            # A copy: the request owns the memory of its output tensors
            outputs.append(np.array(request.get_tensor(port).data, copy=True))
        return outputs

    def providers(self, session: Any) -> list[str]:
        import openvino

        precision = session.precision()
        return [f"CPU (OpenVINO {openvino.__version__.split('-')[0]})"] + (
            [f"{PRECISION_PREFIX}{precision}"] if precision else []
        )

    def teardown(self, session: Any) -> None:
        session.compiled = None


class _Session:
    """A compiled model with the ONNX graph's input and output names (outputs are matched by name, else by
    position)."""

    def __init__(self, compiled: Any, inputs: list[str], outputs: list[str]):
        self.compiled, self.inputs, self.outputs = compiled, inputs, outputs
        self.by_name = {}
        for port in compiled.outputs:
            for name in port.get_names():
                self.by_name.setdefault(name, port)

    def port(self, name: str, index: int) -> Any:
        return self.by_name.get(name) or self.compiled.outputs[index]

    def precision(self) -> str | None:
        try:
            value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        except Exception:
            return None
        text = str(getattr(value, "get_type_name", lambda: value)())
        return {"bf16": "bf16", "f16": "f16", "f32": "f32"}.get(text, text)


def recorded_precision(providers: Any) -> str | None:
    """The inference precision a run recorded in its providers ("inference precision bf16" -> "bf16")."""
    for item in providers or ():
        if isinstance(item, str) and item.startswith(PRECISION_PREFIX):
            return item[len(PRECISION_PREFIX) :]
    return None
