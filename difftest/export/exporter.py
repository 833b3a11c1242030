"""Export a case to ONNX and record what the graph kept."""

from __future__ import annotations

import io
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # model_io imports torch; the parent process of a run never needs it
    from ..suite.model_io import FlatModule

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colour codes, as exporters and ORT print them


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
    cache_note: str | None = None  # how the export cache served or stored this export (see ``cache``)
    # What the exporter warned about while tracing ("Category: first line"), in order, without repeats.
    warnings: list[str] = field(default_factory=list)
    # Cast nodes from a float to an integer type: the ONNX spec leaves out-of-range and NaN inputs undefined.
    float_to_int_casts: list[str] = field(default_factory=list)
    # Nodes that sample (RandomNormal, RandomUniform, their *Like forms, Multinomial, Bernoulli): "op name".
    random_ops: list[str] = field(default_factory=list)
    # A rewrite that turned a model the ONNX checker accepts into one it rejects: (stage, checker's message).
    invalidated_by: list[str] | None = None
    # Graph outputs whose order along an axis the graph leaves unspecified (TopK with sorted=0): name -> axis.
    unordered_outputs: dict[str, int] = field(default_factory=dict)
    # The ONNXProgram of a fresh dynamo export, kept in memory for the case (never cached): localization maps
    # eager's FX values onto the graph's value names with it instead of exporting the model again.
    program: Any = field(default=None, repr=False, compare=False)

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
    same module class with dynamic shapes can otherwise fail on constraints inferred the first time.

    Besides dynamo's caches this clears the Python dispatcher's per-operator dispatch caches: the first export
    of an LSTM or GRU caches ``aten.lstm``'s Python decomposition for AutogradCPU, so the second export traces
    the recurrence unrolled over the sequence and fails with "tracing inferred a static shape" on its length."""
    import torch

    try:
        torch._dynamo.reset()
    except Exception:
        pass
    try:
        from torch import _ops

        for op in list(_ops.get_cached_ops()):
            op._dispatch_cache.clear()
        _ops.reset_cached_ops()
    except Exception:  # torch internals moved: nothing to clear the same way
        pass


def warm_up() -> None:
    """Import the runtimes now (in a fresh worker, while the parent discovers the suites), and do the one-time
    initialisation the exporters do on first use (sympy's warnings filter, inductor's cache folder variable),
    so that it is not mistaken for state a case changed (see ``process_state``). The exporter's registry is
    left to the first export that needs it: a run whose exports all come from the cache never pays for it."""
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401

    import getpass
    import os
    import tempfile

    try:  # where torch's compiler keeps its files; torch sets it on first use otherwise (during some case)
        user = re.sub(r"[\\/:*?\"<>|]", "_", getpass.getuser())
    except Exception:
        user = "user"
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"torchinductor_{user}"))
    try:
        import torch.utils._sympy.functions  # noqa: F401  (sympy adds a warnings filter when imported)
    except Exception:
        pass


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
            tuple(
                {int(axis): torch.export.Dim.DYNAMIC for axis in live_axes.get(name, {})} or None
                for name in flat.live_names
            ),
        )
    elif live_axes:
        options["dynamic_axes"] = live_axes
    if exporter == "dynamo":
        reuse_torchlib_registry()
        reset_dynamo()
    seen: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            if exporter == "dynamo":
                program = torch.onnx.export(flat, example, verbose=False, **options)
                model = program.model_proto
            else:
                buffer = io.BytesIO()
                torch.onnx.export(flat, example, buffer, **options)
                model = onnx.load_from_string(buffer.getvalue())
    except Exception as exc:  # any exporter failure is a verdict, not a crash
        if exporter == "dynamo":
            reset_dynamo()
        return ExportResult(
            exporter,
            time.perf_counter() - started,
            error=in_user_terms(describe_exception(exc), list(flat.live_names)),
            warnings=summarize_warnings(seen),
        )
    notes = []
    if exporter == "dynamo":
        reset_dynamo()  # what the trace cached is not left to the eager runs and exports that follow
        from .onnx_file import name_dynamic_axes

        # The file in onnx/ is one a user could ship: its dynamic axes carry the user's names, not s36, s43 ...
        notes = [f"DynamicAxes: {note}" for note in name_dynamic_axes(model, live_axes)]
    result = described(exporter, model, named_transforms(transform), started, summarize_warnings(seen) + notes)
    if exporter == "dynamo" and result.ok:
        result.program = program
    return result


def unordered_outputs(model: Any) -> dict[str, int]:
    """Graph outputs produced (through Identity) by a TopK whose ``sorted`` attribute is 0: the specification
    leaves the order of the k results unspecified. Output name -> the TopK axis."""
    from onnx import helper

    producers = {out: node for node in model.graph.node for out in node.output}
    found: dict[str, int] = {}
    for output in model.graph.output:
        node = producers.get(output.name)
        while node is not None and node.op_type == "Identity":
            node = producers.get(node.input[0])
        if node is None or node.op_type != "TopK":
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if int(attributes.get("sorted", 1)) == 0:
            found[output.name] = int(attributes.get("axis", -1))
    return found


def value_types(model: Any) -> dict[str, Any]:
    """ONNX type protos of every tensor value the model (after shape inference, where it succeeds) knows."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    return {
        value.name: value.type
        for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type
    }


def element_types(model: Any) -> dict[str, int]:
    """Element type (TensorProto enum) of every value the model knows, initializers included."""
    types = {name: kind.tensor_type.elem_type for name, kind in value_types(model).items()}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return types


INTEGER_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # uint8, int8, uint16, int16, int32, int64, uint32, uint64
FLOAT_TYPES = {1, 10, 11, 16}


def float_to_int_casts(model: Any) -> list[str]:
    """Names of the Cast nodes that turn floats into integers (their input's type from shape inference)."""
    from onnx import helper

    casts = [
        n
        for n in model.graph.node
        if n.op_type == "Cast"
        and any(a.name == "to" and helper.get_attribute_value(a) in INTEGER_TYPES for a in n.attribute)
    ]
    if not casts:
        return []
    types = element_types(model)
    return [n.name or n.output[0] for n in casts if types.get(n.input[0]) in FLOAT_TYPES]


RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


def random_ops(model: Any) -> list[str]:
    """ "Op name" of every node that samples, in the graph and its subgraphs (a Dropout in training mode samples
    too, but says so only through its inputs: it is listed when its training_mode input is present)."""
    found: list[str] = []

    def visit(graph: Any) -> None:
        for node in graph.node:
            if node.op_type in RANDOM_OPS or (node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]):
                found.append(f"{node.op_type} {node.name or node.output[0]}")
            for attribute in node.attribute:
                if attribute.g is not None and len(attribute.g.node):
                    visit(attribute.g)
                for sub in attribute.graphs:
                    visit(sub)

    visit(model.graph)
    return found


def named_transforms(transform: Any) -> list[tuple[str, Any]]:
    """``transform`` as (stage, function) steps: a bare function is the case's ``onnx_transform``; a list gives
    each step's stage itself (``onnx_transform`` for the case's rewrite, ``transform:NAME`` for a candidate's)."""
    if transform is None:
        return []
    if callable(transform):
        return [("onnx_transform", transform)]
    return [(stage, step) for stage, step in transform if step is not None]


def described(
    exporter: str, model: Any, steps: list[tuple[str, Any]], started: float, warnings: list[str] | None = None
) -> ExportResult:
    """An export's result from its ONNX model: the (stage, transform) steps applied, then the graph's facts (opset,
    nodes, inputs kept, outputs, digest, float-to-int casts, unordered outputs). Also how a recorded ONNX test
    folder's model is described."""
    import hashlib

    warnings = list(warnings or [])
    model, invalidated_by, failed = apply_transforms(model, steps)
    if failed is not None:
        return ExportResult(
            exporter, time.perf_counter() - started, error=failed[1], stage=failed[0], warnings=warnings
        )
    data = model.SerializeToString()
    initializers = {i.name for i in model.graph.initializer}
    return ExportResult(
        exporter,
        time.perf_counter() - started,
        onnx_bytes=data,
        opset=next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        node_count=len(model.graph.node),
        graph_inputs=[i.name for i in model.graph.input if i.name not in initializers],
        graph_outputs=[o.name for o in model.graph.output],
        digest=hashlib.sha256(data).hexdigest(),
        warnings=warnings,
        float_to_int_casts=float_to_int_casts(model),
        random_ops=random_ops(model),
        invalidated_by=invalidated_by,
        unordered_outputs=unordered_outputs(model),
    )


def apply_transforms(model: Any, steps: list[tuple[str, Any]]) -> tuple[Any, list[str] | None, tuple[str, str] | None]:
    """Apply (stage, transform) steps in order: (the model, [stage, checker complaint] for the first step that made
    a valid graph invalid, None) or (the model so far, that, (stage, why it failed)) when a step fails."""
    invalidated_by = None
    for stage, step in steps:
        transformed = apply_transform(model, step)
        if isinstance(transformed, str):
            return model, invalidated_by, (stage, transformed)
        model, problem = transformed
        if problem and invalidated_by is None:
            invalidated_by = [stage, problem]
    return model, invalidated_by, None


def apply_transform(model: Any, transform: Any) -> tuple[Any, str | None] | str:
    """(the transformed model, the ONNX checker's complaint if the rewrite made a valid model invalid), or a
    message saying why the transform failed.

    The runtimes still get the model (a checker can be stricter than a runtime); when one then refuses it,
    the complaint says the rewrite, not the runtime, made the graph invalid (see ``blame``).
    """
    import onnx

    try:
        valid_before = _check(model) is None
        result = transform(model)
    except Exception as exc:
        return f"the graph transform failed: {describe_exception(exc)}"
    if not isinstance(result, onnx.ModelProto):
        return f"the graph transform returned {type(result).__name__}, expected onnx.ModelProto"
    return result, (_check(result) if valid_before else None)


def _check(model: Any) -> str | None:
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        return describe_exception(exc, 600)
    return None


CONTROL_FLOW_WARNINGS = ("TracerWarning",)


# Warnings every export of a kind prints, about the exporter itself rather than the model: not recorded.
ROUTINE_WARNINGS = (
    "legacy TorchScript-based ONNX export",
    "isinstance(treespec, LeafSpec)",
    "The feature will be removed. Please remove usage of this function",
)


def summarize_warnings(caught: list[Any], limit: int = 40) -> list[str]:
    """``Category: message`` per distinct warning (message cut to its first line), in order, at most ``limit``."""
    found: list[str] = []
    for item in caught:
        text = ANSI.sub("", str(item.message)).strip().splitlines()
        if text and any(routine in text[0] for routine in ROUTINE_WARNINGS):
            continue
        line = f"{item.category.__name__}: {text[0] if text else ''}"[:500]
        if item.category.__name__ in CONTROL_FLOW_WARNINGS and getattr(item, "filename", None):
            line += f" (at {item.filename}:{item.lineno})"  # the model's line that the trace froze
        if line not in found:
            found.append(line)
    return found[:limit]


def traced_warnings(warnings_seen: list[str]) -> list[str]:
    """The warnings that say a trace may not generalize (a data-dependent value was frozen into the graph)."""
    return [w for w in warnings_seen if w.split(":", 1)[0] in CONTROL_FLOW_WARNINGS]


_LIVE = re.compile(r"(?:inputs|L|args)\[(?:'live'|\"live\"|0)\]\[(\d+)\]")
_OUR_FRAME = re.compile(r"^\s*File \"[^\"]*[/\\]difftest[/\\][^\"]*\", line \d+, in .*$")


def in_user_terms(text: str, names: list[str]) -> str:
    """An exporter's message in the case's own names: ``inputs['live'][2]`` (difftest's adapter takes its
    inputs as ``*live``) becomes ``input 'input_features'``, and the adapter's frames are left out of any
    traceback the message quotes."""

    def name(match: re.Match) -> str:
        index = int(match.group(1))
        return f"input {names[index]!r}" if index < len(names) else match.group(0)

    lines = []
    skip_code = False
    for line in _LIVE.sub(name, text).splitlines():
        if _OUR_FRAME.match(line):
            skip_code = True
            continue
        if skip_code and line.startswith("    ") and not line.lstrip().startswith("File "):
            skip_code = False
            continue
        skip_code = False
        lines.append(line)
    return "\n".join(lines)


def describe_exception(exc: BaseException, limit: int = 4000) -> str:
    """``Type: message`` without terminal colour codes, bounded in length."""
    text = ANSI.sub("", f"{type(exc).__name__}: {exc}").strip()
    return text if len(text) <= limit else text[: limit - 20] + " … [truncated]"
