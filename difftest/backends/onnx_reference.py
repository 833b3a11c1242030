"""The ONNX specification as a backend: ``onnx.reference.ReferenceEvaluator`` runs a graph in numpy.

Slow, and not a deployment target: it is a third opinion. When a candidate and eager disagree and only one
ONNX runtime ran the graph, the graph and the runtime cannot be told apart; the reference implementation of
the specification can: if it computes what eager computes, the runtime is at fault; if it computes what the
runtime computes, the graph is. difftest runs it automatically as a control on failing candidates (see
``controls``), bounded by the model's size and a time budget; it can also be asked for as a candidate
(``--backends torch,ort-cpu,onnx-ref``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend, BackendUnavailable, Subject

MAX_NODES = 4000
MAX_WEIGHT_BYTES = 256 * 2**20


class OnnxReference(Backend):
    name = "onnx-ref"
    description = "the ONNX specification's reference implementation (onnx.reference, numpy; a control)"
    settings = ("exporter", "transform")

    def unavailable_reason(self) -> str | None:
        try:
            import onnx.reference  # noqa: F401
        except ImportError as exc:
            return f"onnx.reference cannot be imported ({exc}); install onnx>=1.13"
        return None

    def prepare(self, subject: Subject) -> Any:
        import onnx
        from onnx.reference import ReferenceEvaluator

        model = onnx.load_from_string(subject.onnx_bytes)
        nodes = len(model.graph.node)
        weights = sum(np.prod(i.dims, dtype=np.int64) * 4 for i in model.graph.initializer)
        if nodes > MAX_NODES or weights > MAX_WEIGHT_BYTES:
            raise BackendUnavailable(
                f"the graph is too large for the numpy reference implementation ({nodes} nodes, about "
                f"{weights / 2**20:.0f} MiB of weights; limits {MAX_NODES} nodes, {MAX_WEIGHT_BYTES // 2**20} MiB)"
            )
        try:
            return ReferenceEvaluator(model)
        except Exception as exc:
            raise BackendUnavailable(
                f"onnx.reference cannot load this graph: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"
            ) from None

    def run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        names = list(session.input_names)
        outputs = session.run(None, {name: feeds[name] for name in names if name in feeds})
        return [np.asarray(o) for o in outputs]
