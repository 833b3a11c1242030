"""Export a case to ONNX and record what the graph kept."""

from __future__ import annotations

import io
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # model_io imports torch; the parent process of a run never needs it
    from .model_io import FlatModule

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class ExportResult:
    exporter: str
    seconds: float
    onnx_bytes: bytes | None = None
    error: str | None = None
    stage: str = "export"
    opset: int | None = None
    node_count: int | None = None
    graph_inputs: list[str] = field(default_factory=list)
    graph_outputs: list[str] = field(default_factory=list)
    digest: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.onnx_bytes is not None


_registry_reuse_installed = False


def reuse_torchlib_registry() -> bool:
    """Build torch.onnx's operator registry once per process instead of once per dynamo export.

    torch 2.13's exporter calls ``ONNXRegistry.from_torchlib`` on every export, which rebuilds ~500 torchlib
    entries from their Python source (about half a second here, most of a small model's export). The
    registry is only read during export (and extended by ``custom_translation_table``, which difftest does not
    pass), so each export gets its own shallow copy of one registry built per opset. If torch's internals
    do not look as expected, nothing is changed and exports keep their original cost.
    """
    global _registry_reuse_installed
    if _registry_reuse_installed:
        return True
    try:
        from torch.onnx._internal.exporter import _registration

        registry_class = _registration.ONNXRegistry
        original = registry_class.__dict__["from_torchlib"]
        probe = registry_class()
        if not isinstance(original, classmethod) or set(vars(probe)) != {"_opset_version", "functions"}:
            return False
    except (ImportError, AttributeError, KeyError):
        return False
    built: dict[int, object] = {}

    def from_torchlib(cls, opset_version=_registration._constants.TORCHLIB_OPSET):
        if opset_version not in built:
            built[opset_version] = original.__func__(cls, opset_version=opset_version)
        shared = built[opset_version]
        fresh = cls()
        fresh._opset_version = shared._opset_version
        fresh.functions = {target: list(entries) for target, entries in shared.functions.items()}
        return fresh

    registry_class.from_torchlib = classmethod(from_torchlib)
    _registry_reuse_installed = True
    return True


def reset_dynamo() -> None:
    """Forget what torch.export/dynamo learned from earlier exports in this process: a second export of the
    same module class with dynamic shapes can otherwise fail on constraints inferred the first time."""
    import torch

    try:
        torch._dynamo.reset()
    except Exception:
        pass


def warm_up() -> None:
    """Import the runtimes now (in a fresh worker, while the parent discovers the suites). The exporter's
    registry is left to the first export that needs it: a run whose exports all come from the cache never
    pays for it."""
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401


def export(
    flat: FlatModule,
    example: tuple,
    output_names: list[str],
    exporter: str = "dynamo",
    opset: int | None = None,
    dynamic_axes: dict | None = None,
    transform: Any = None,
) -> ExportResult:
    """Export ``flat`` with the chosen exporter; failures become an ExportResult with ``error``."""
    import onnx
    import torch

    started = time.perf_counter()
    options: dict[str, Any] = dict(
        input_names=list(flat.live_names),
        output_names=list(output_names),
        dynamo=exporter == "dynamo",
    )
    if opset is not None:
        options["opset_version"] = opset
    live_axes = {k: v for k, v in (dynamic_axes or {}).items() if k in flat.live_names}
    if live_axes and exporter == "dynamo":
        # FlatModule.forward(*inputs) is variadic: torch.export wants one spec per element of that tuple.
        options["dynamic_shapes"] = (
            tuple({int(axis): torch.export.Dim.DYNAMIC for axis in live_axes.get(name, {})} or None
                  for name in flat.live_names),
        )
    elif live_axes:
        options["dynamic_axes"] = live_axes
    if exporter == "dynamo":
        reuse_torchlib_registry()
        reset_dynamo()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                program = torch.onnx.export(flat, example, verbose=False, **options)
                model = program.model_proto
            else:
                buffer = io.BytesIO()
                torch.onnx.export(flat, example, buffer, **options)
                model = onnx.load_from_string(buffer.getvalue())
    except Exception as exc:  # any exporter failure is a verdict, not a crash
        return ExportResult(exporter, time.perf_counter() - started, error=describe_exception(exc))
    if transform is not None:
        try:
            model = transform(model)
        except Exception as exc:
            return ExportResult(
                exporter, time.perf_counter() - started, error=describe_exception(exc), stage="onnx_transform"
            )
        if not isinstance(model, onnx.ModelProto):
            return ExportResult(
                exporter,
                time.perf_counter() - started,
                error=f"onnx_transform returned {type(model).__name__}, expected onnx.ModelProto",
                stage="onnx_transform",
            )
    data = model.SerializeToString()
    initializers = {i.name for i in model.graph.initializer}
    import hashlib

    return ExportResult(
        exporter,
        time.perf_counter() - started,
        onnx_bytes=data,
        opset=next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        node_count=len(model.graph.node),
        graph_inputs=[i.name for i in model.graph.input if i.name not in initializers],
        graph_outputs=[o.name for o in model.graph.output],
        digest=hashlib.sha256(data).hexdigest(),
    )


def describe_exception(exc: BaseException, limit: int = 4000) -> str:
    """``Type: message`` without terminal colour codes, bounded in length."""
    text = _ANSI.sub("", f"{type(exc).__name__}: {exc}").strip()
    return text if len(text) <= limit else text[: limit - 20] + " … [truncated]"
