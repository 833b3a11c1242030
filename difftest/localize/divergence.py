"""Which layer? Find the first ONNX node whose output diverges while its inputs agree.

Two kinds of reference:

- **PyTorch eager** (the default): the case is exported with the dynamo exporter, whose ONNX values are
  named after the FX nodes of the exported program; the program is run node by node to record every
  intermediate tensor, and the same values are added as outputs of the candidate's graph. A mapped value
  is compared only where both sides have it; ONNX nodes between mapped values form the *region* of one
  FX node (an aten op decomposed into several ONNX ops).
- **another runtime on the same graph** (ort-cpu against ort-cuda, optimizations on against off, openvino against
  onnx-ref): every value is evaluated on both and compared.

Any backend that runs an ONNX graph can be localized and be the reference: values are exposed as extra graph
outputs and run through the backend's own ``prepare``/``run``/``teardown`` (ONNX Runtime, OpenVINO, ``onnx-ref``).
A backend that runs the PyTorch model (eager, torch-compile, torch-cuda) has no ONNX node to point at: the result
says what its own controls do instead (``Backend.localize_instead``).

A value diverges when the classifier fails it (default tolerances) *and* its relative RMSE exceeds a
noise budget, so float drift accumulated through a deep net is not blamed on the node where it happens to
cross a threshold. The culprit is the first node (in topological order) whose output diverges while every
input agrees: the rule that separates a node's own error from inherited error. Values are evaluated in
batches under a memory cap. The culprit's node is extracted with the reference's values for its inputs and
rerun alone, to confirm it reproduces the discrepancy; the bundle is saved in the ONNX test format.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..export.exporter import value_types

NOISE_BUDGET = {"float16": 2e-3, "bfloat16": 1e-2, "float32": 1e-4, "float64": 1e-9}
MEMORY_CAP = 512 * 2**20
TRIVIAL_OPS = {"Constant", "Identity"}
OPT_LEVELS = ("disable", "basic", "extended", "all")
# ORT graph transformers that can be switched off one by one (InferenceSession(disabled_optimizers=...)).
# ORT ignores names it does not know, so a miss here only means "not found", never a wrong answer.
ORT_OPTIMIZERS = (
    "ConstantFolding",
    "CommonSubexpressionElimination",
    "ConvActivationFusion",
    "ConvAddFusion",
    "ConvBNFusion",
    "ConvMulFusion",
    "GemmActivationFusion",
    "MatMulAddFusion",
    "MatMulScaleFusion",
    "GeluFusion",
    "BiasGeluFusion",
    "FastGeluFusion",
    "LayerNormFusion",
    "SimplifiedLayerNormFusion",
    "SkipLayerNormFusion",
    "AttentionFusion",
    "EmbedLayerNormFusion",
    "ReshapeFusion",
    "TransposeOptimizer",
    "NchwcTransformer",
    "NhwcTransformer",
    "GemmTransposeFusion",
    "MatmulTransposeFusion",
    "DivMulFusion",
    "NoopElimination",
    "UnsqueezeElimination",
    "QuickGeluFusion",
    "BiasSoftmaxFusion",
    "BiasDropoutFusion",
    "GatherToSliceFusion",
    "ConcatSliceElimination",
)


@dataclass
class Localization:
    status: str  # one of judge.vocabulary.LOCALIZATION_STATUSES
    reason: str
    reference: str
    candidate: str
    probe: str
    culprit: dict[str, Any] | None = None
    suspects: list[dict[str, Any]] = field(default_factory=list)
    compared: int = 0
    divergent: int = 0
    reproduced: bool | None = None
    repro: str | None = None
    optimizer: str | None = None
    seconds: float = 0.0
    note: str | None = None  # how it was localized, where that is not the plain way (another reference)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


# --- running graphs ------------------------------------------------------------------------------------


def evaluate(
    model, names: list[str], feeds: dict[str, np.ndarray], backend, cap: int = MEMORY_CAP
) -> dict[str, np.ndarray]:
    """Values ``names`` of ``model`` on ``backend`` (any ONNX backend: its own prepare, run and teardown), in
    batches of extra graph outputs under a memory cap."""
    import onnx
    from onnx import helper

    types = value_types(model)
    graph_outputs = {o.name for o in model.graph.output}
    wanted = [n for n in names if n in types or n in graph_outputs]
    found: dict[str, np.ndarray] = {}
    batch: list[str] = []
    budget = 0
    estimates = {n: _estimate_bytes(types.get(n), feeds) for n in wanted}

    def flush() -> None:
        if not batch:
            return
        augmented = onnx.ModelProto()
        augmented.CopyFrom(model)
        present = {o.name for o in augmented.graph.output}
        for name in batch:
            if name not in present:
                augmented.graph.output.append(helper.make_value_info(name, types[name]))
        for name, value in run_graph(backend, augmented.SerializeToString(), feeds).items():
            if name in batch:
                found[name] = value
        batch.clear()

    for name in wanted:
        if batch and budget + estimates[name] > cap:
            flush()
            budget = 0
        batch.append(name)
        budget += estimates[name]
    flush()
    return found


def run_graph(backend, model_bytes: bytes, feeds: dict[str, np.ndarray], session_for=None) -> dict[str, np.ndarray]:
    """Every output of the graph ``model_bytes`` on ``backend``, by name, through the backend's own prepare and run
    (``session_for(bytes)`` builds the session instead, for ORT's optimizer bisection)."""
    import onnx

    from ..backends import Subject

    graph = onnx.load_from_string(model_bytes).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    outputs = [o.name for o in graph.output]
    subject = Subject(
        module=None, input_names=inputs, output_names=outputs, call=None, onnx_bytes=model_bytes, graph_inputs=inputs
    )
    session = session_for(model_bytes) if session_for is not None else backend.prepare(subject)
    try:
        values = backend.run(session, {n: feeds[n] for n in inputs if n in feeds})
    finally:
        backend.teardown(session)
    return {name: np.asarray(value) for name, value in zip(outputs, values)}


def _estimate_bytes(type_proto, feeds: dict[str, np.ndarray]) -> int:
    if type_proto is None:
        return 1 << 20
    batchish = max((a.shape[0] for a in feeds.values() if a.ndim), default=1)
    size = 1
    for dim in type_proto.tensor_type.shape.dim:
        size *= dim.dim_value if dim.HasField("dim_value") else batchish
    return 8 * max(size, 1)


def torch_values(program, live: list[Any]) -> dict[str, np.ndarray]:
    """Every tensor an exported program computes, by FX node name (what the dynamo exporter names values)."""
    import torch

    from ..suite.model_io import to_numpy

    values: dict[str, np.ndarray] = {}

    class Capture(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if isinstance(result, torch.Tensor):
                values[node.name] = to_numpy(result)
            return result

    with torch.inference_mode():
        Capture(program.module()).run(*live)
    return values


# --- judging values -------------------------------------------------------------------------------------


def diverges(reference: np.ndarray, candidate: np.ndarray) -> tuple[bool, float]:
    """(diverges?, relative error). Shape or dtype-kind changes diverge; float noise under the budget does not."""
    from ..judge.classify import classify

    if reference.shape != candidate.shape:
        return True, float("inf")
    verdict = classify(reference, candidate)
    if verdict.passed:
        return False, 0.0
    if reference.dtype.kind not in "fc" or candidate.dtype.kind not in "fc":
        return True, 1.0
    with np.errstate(all="ignore"):
        ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
        finite = np.isfinite(ref) & np.isfinite(cand)
        if not np.array_equal(np.isnan(ref), np.isnan(cand)):
            return True, float("inf")
        scale = float(np.sqrt(np.mean(ref[finite] ** 2))) if finite.any() else 0.0
        error = float(np.sqrt(np.mean((ref[finite] - cand[finite]) ** 2))) if finite.any() else 0.0
    relative = error / scale if scale > 0 else (float("inf") if error > 0 else 0.0)
    return relative > NOISE_BUDGET.get(str(reference.dtype), 1e-4), relative


def first_divergent(
    model, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
) -> tuple[list[dict[str, Any]], int, int]:
    """Ranked suspects: nodes (regions) whose mapped output diverges while every mapped input agrees."""
    producers = {out: node for node in model.graph.node for out in node.output}
    constants = {i.name for i in model.graph.initializer} | {i.name for i in model.graph.input}
    status: dict[str, tuple[bool, float]] = {}
    for name in reference:
        if name in candidate:
            status[name] = diverges(reference[name], candidate[name])
    suspects: list[dict[str, Any]] = []
    for node in model.graph.node:
        outputs = [o for o in node.output if o in status]
        if not outputs or not any(status[o][0] for o in outputs):
            continue
        region, boundary = _region(node, producers, status, constants)
        if any(status[b][0] for b in boundary):
            continue  # inherited: an input already diverges
        worst = max((status[o][1] for o in outputs if status[o][0]), default=0.0)
        members = [n for n in region if n.op_type not in TRIVIAL_OPS] or [node]
        suspects.append({"output": outputs[0], "relative_error": worst, "nodes": members, "node": node})
    divergent = sum(1 for d, _ in status.values() if d)
    return suspects, len(status), divergent


def _region(node, producers: dict[str, Any], status: dict[str, tuple[bool, float]], constants: set[str]):
    """The node plus its unmapped producers back to mapped values or constants; and those boundary values."""
    region, boundary, stack, seen = [node], [], list(node.input), set()
    while stack:
        name = stack.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in status:
            boundary.append(name)
        elif name in constants or name not in producers:
            continue
        else:
            producer = producers[name]
            if producer not in region:
                region.append(producer)
                stack.extend(producer.input)
    order = {id(n): i for i, n in enumerate(producers.values())}
    region.sort(key=lambda n: order.get(id(n), 0))
    return region, boundary


def describe_node(node, model) -> dict[str, Any]:
    from onnx import helper

    types = value_types(model)

    def shape(name: str) -> list[Any] | None:
        t = types.get(name)
        if t is None:
            return None
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.tensor_type.shape.dim]

    meta = {p.key: p.value for p in node.metadata_props}
    if "pkg.torch.onnx.stack_trace" not in meta:
        # A node a rewrite added carries no exporter metadata: describe it by the exported node it follows.
        producers = {out: n for n in model.graph.node for out in n.output}
        current = node
        for _ in range(4):
            upstream = producers.get(current.input[0]) if current.input else None
            if upstream is None:
                break
            found = {p.key: p.value for p in upstream.metadata_props}
            if "pkg.torch.onnx.stack_trace" in found:
                meta = found
                break
            current = upstream
    source = _user_frame(meta.get("pkg.torch.onnx.stack_trace", ""))
    scopes = meta.get("pkg.torch.onnx.name_scopes")
    module = None
    if scopes:
        try:
            parts = [s for s in json.loads(scopes.replace("'", '"'))[:-1] if s]
        except ValueError:
            parts = [scopes]
        if parts and parts[0] == "inner":  # difftest's FlatModule wraps the case's module as `inner`
            parts = parts[1:]
        module = ".".join(parts) or "(the case's module itself)"
    attributes = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        attributes[a.name] = (
            value.decode()
            if isinstance(value, bytes)
            else (value if isinstance(value, (int, float, str, list)) else str(type(value).__name__))
        )
    return {
        "name": node.name or node.output[0],
        "op_type": node.op_type,
        "attributes": attributes,
        "inputs": [{"name": i, "shape": shape(i)} for i in node.input if i],
        "outputs": [{"name": o, "shape": shape(o)} for o in node.output if o],
        "module": module,
        "source": source,
    }


def _has_exporter_metadata(node) -> bool:
    return any(p.key.startswith("pkg.torch.onnx") for p in node.metadata_props)


def _user_frame(stack: str) -> str | None:
    """The innermost frame of the user's code in an exporter stack trace ("file", line N: code)."""
    lines = [line.strip() for line in stack.splitlines() if line.strip()]
    frames = []
    for i, line in enumerate(lines):
        if line.startswith("File "):
            code = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("File ") else ""
            frames.append((line[5:], code))
    ours = ("/difftest/suite/model_io.py", "/torch/", "/site-packages/")
    user = [f for f in frames if not any(marker in f[0] for marker in ours)]
    chosen = (user or frames or [None])[-1]
    return f"{chosen[0]}: {chosen[1]}".strip(": ") if chosen else None


# --- the minimal repro ----------------------------------------------------------------------------------


def extract_region(
    model, nodes: list[Any], output: str, reference: dict[str, np.ndarray], feeds: dict[str, np.ndarray]
):
    """A model of just ``nodes``: external inputs become graph inputs (fed the reference's values)."""
    from onnx import helper, numpy_helper

    produced = {o for n in nodes for o in n.output}
    initializers = {i.name: i for i in model.graph.initializer}
    constants_needed, inputs, values = [], [], {}
    for node in nodes:
        for name in node.input:
            if not name or name in produced or name in values or any(i.name == name for i in constants_needed):
                continue
            if name in initializers:
                constants_needed.append(initializers[name])
            elif name in reference or name in feeds:
                array = reference.get(name, feeds.get(name))
                values[name] = array
                inputs.append(
                    helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape))
                )
            else:
                return None, {}
    types = value_types(model)
    if output not in types:
        return None, {}
    graph = helper.make_graph(
        list(nodes),
        "difftest_repro",
        inputs,
        [helper.make_value_info(output, types[output])],
        initializer=constants_needed,
    )
    repro = helper.make_model(graph, opset_imports=list(model.opset_import))
    repro.ir_version = model.ir_version
    del numpy_helper
    return repro, values


def save_bundle(
    folder: Path,
    model,
    values: dict[str, np.ndarray],
    expected: np.ndarray,
    output: str,
    candidate_name: str,
    candidate_value: np.ndarray,
    summary: dict[str, Any],
) -> Path:
    import onnx
    from onnx import numpy_helper

    data = folder / "test_data_set_0"
    data.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    for i, (name, array) in enumerate(values.items()):
        (data / f"input_{i}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
    (data / "output_0.pb").write_bytes(numpy_helper.from_array(expected, output).SerializeToString())
    target = folder / "outputs" / "".join(c if c.isalnum() or c in "-_" else "_" for c in candidate_name)
    target.mkdir(parents=True, exist_ok=True)
    (target / "output_0.pb").write_bytes(numpy_helper.from_array(candidate_value, output).SerializeToString())
    (folder / "README.txt").write_text(
        "difftest localization repro\n" + json.dumps(summary, indent=2) + "\n\n"
        "test_data_set_0/ holds the culprit's inputs as the reference computed them and the reference's output;\n"
        f"outputs/{target.name}/ what {candidate_name} computes from the same inputs.\n"
    )
    return folder


# --- the driver -----------------------------------------------------------------------------------------


class _Budget:
    def __init__(self, seconds: float | None):
        self.deadline = time.monotonic() + seconds if seconds else None

    def spent(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def localize(
    ref,
    candidate: str = "ort-cpu",
    reference: str = "torch",
    probe: str = "base",
    out_dir: Path | None = None,
    budget_seconds: float | None = None,
    built=None,
    graph=None,
    own_export=None,
) -> Localization:
    """Localize the discrepancy of ``candidate`` against ``reference`` on one probe of the case ``ref``.

    ``graph``: the export the candidate ran (an ``ExportResult``, as the worker made it: its ONNX bytes, and for a
    fresh dynamo export its ONNXProgram), so the divergence is looked for in the graph that failed and nothing is
    exported again. A graph eager's values cannot be mapped onto (the user's own file, a TorchScript export) is
    localized against the ONNX reference implementation on the same graph instead (``ort-cpu`` when the candidate
    is ``onnx-ref``) when its values share no names with difftest's own dynamo export (``own_export``, the
    worker's, else made here) to map eager's onto. Without it the case is built and exported here
    (``difftest localize``)."""
    started = time.monotonic()
    result = Localization("error", "", reference, candidate, probe)
    try:
        _localize(ref, candidate, reference, probe, out_dir, _Budget(budget_seconds), result, built, graph, own_export)
    except Exception as exc:  # localization is advisory: its failure is reported, never fatal
        from ..export.exporter import describe_exception

        result.status, result.reason = "error", f"localization failed: {describe_exception(exc, 600)}"
    result.seconds = time.monotonic() - started
    return result


def _localize(
    ref,
    candidate_spec: str,
    reference: str,
    probe: str,
    out_dir: Path | None,
    budget: _Budget,
    result: Localization,
    built,
    graph=None,
    own_export=None,
) -> None:
    from ..backends.candidates import make, parse

    candidate = parse(candidate_spec)
    unsupported = _unsupported(candidate, reference)
    if unsupported:
        result.status, result.reason = "unsupported", unsupported
        return
    setup = _build_setup(ref, built, probe, candidate, result)
    if setup is None:
        return
    backend = make(candidate)
    reason = backend.unavailable_reason()
    if reason:
        result.status, result.reason = "unsupported", f"{candidate_spec} is not available here: {reason}"
        return
    if graph is not None and getattr(graph, "onnx_bytes", None):
        found = _on_the_graph_that_ran(graph, own_export, reference, candidate, setup, result)
    else:
        found = _on_a_fresh_export(reference, candidate, setup, result)
    if found is None:
        return
    model, ref_values = found
    if budget.spent():
        result.status, result.reason = "not_found", "the time budget was spent evaluating the reference"
        return
    names = [n for n in _all_values(model) if n in ref_values]
    cand_values = evaluate(model, names, setup.feeds, backend)
    final = [o.name for o in model.graph.output]
    if not any(n in ref_values and n in cand_values and diverges(ref_values[n], cand_values[n])[0] for n in final):
        result.status, result.reason = "no_divergence", _no_divergence(candidate_spec, result)
        result.compared = len(names)
        return
    suspects, result.compared, result.divergent = first_divergent(model, ref_values, cand_values)
    if not suspects:
        result.status, result.reason = (
            "not_found",
            "outputs diverge but no node has agreeing inputs and a diverging output among the compared values",
        )
        return
    ranked = _ranked_nodes(suspects, model)
    result.suspects, result.culprit, result.status = ranked[:10], ranked[0], "found"
    first = suspects[0]
    result.reason = (
        f"first divergent value {first['output']!r} (relative error {first['relative_error']:.3g}) "
        f"with every input agreeing; {result.divergent} of {result.compared} compared values diverge"
    )
    if budget.spent():
        return
    _confirm(model, first, ref_values, setup.feeds, backend, candidate_spec, result, out_dir)
    if budget.spent():
        return
    result.optimizer = _bisect_optimizer(model, candidate, ref_values, setup.feeds, final)


def _unsupported(candidate, reference: str) -> str | None:
    """Why this candidate cannot be localized against this reference at all (None: it can)."""
    from ..backends import REGISTRY
    from ..backends.candidates import parse

    if not REGISTRY[candidate.backend].needs_onnx:
        instead = REGISTRY[candidate.backend].localize_instead
        return f"{candidate.name} runs no ONNX graph: nothing to localize in" + (
            f". Instead: {instead}" if instead else ""
        )
    if reference not in ("torch", "eager") and not REGISTRY[parse(reference).backend].needs_onnx:
        return (
            f"the reference {reference} runs the PyTorch model, not a graph: localize against eager (--reference "
            "torch) or against another ONNX runtime on the same graph"
        )
    return None


def _build_setup(ref, built, probe: str, candidate, result: Localization) -> "_Setup | None":
    """The built case flattened, with the probe's feeds (None, with ``result`` saying why, when it cannot be)."""
    import torch

    from ..export.transforms import steps
    from ..suite.cases import build
    from ..suite.discover import find_definition
    from ..suite.model_io import FlatModule, flatten_outputs, signature_of, to_feeds
    from ..suite.probes import ALL_PROBES, make_probes

    torch.manual_seed(0)
    built = built or build(find_definition(ref))
    if built.onnx_test is not None:
        result.status, result.reason = "unsupported", "ONNX test folders have no PyTorch model to map values to"
        return None
    signature, example = signature_of(built.module, built.args, dict(built.kwargs or {}), built.bake_kwargs)
    frozen = {n: example[signature.names.index(n)] for n in signature.baked}
    probes = make_probes(to_feeds(signature.names, example), list(ALL_PROBES), built.dynamic_axes)
    if probe not in probes:
        result.status, result.reason = "unsupported", f"probe {probe!r} does not apply to this case"
        return None
    with torch.inference_mode():
        output_names, _ = flatten_outputs(built.module(*built.args, **dict(built.kwargs or {})))
    flat = FlatModule(built.module, signature, frozen)
    transform = steps(built.onnx_transform, candidate.get("transform"))
    return _Setup(
        built, flat, example, signature, frozen, output_names, list(flat.live_names), probes[probe], transform
    )


def _no_divergence(candidate_spec: str, result: Localization) -> str:
    """Why nothing was found when the graph's outputs agree once its values are exposed."""
    if result.note and result.reference not in ("torch", "eager"):
        return (
            f"{candidate_spec} computes what {result.reference} computes on every output of the same graph: the "
            "runtime does what the graph says, so a difference from eager is in the graph itself, and its values "
            "cannot be mapped onto eager's to say where"
        )
    return (
        "the graph's outputs agree with the reference on this probe once intermediate values are exposed (extra "
        "outputs can change which fusions a runtime applies); nothing to localize"
    )


def _ranked_nodes(suspects: list[dict[str, Any]], model) -> list[dict[str, Any]]:
    """Each suspect region's nodes, described, in the order to look at them: the producer of the divergent value
    first, then the rest of its region; within an exported op's region, nodes the exporter did not create (no
    exporter metadata: a rewrite added them afterwards) first."""
    ranked = []
    exported_graph = any(_has_exporter_metadata(n) for n in model.graph.node)
    for suspect in suspects:
        producer = suspect["node"]
        others = [n for n in reversed(suspect["nodes"]) if n is not producer]
        order = ([producer] if producer.op_type not in TRIVIAL_OPS else []) + others
        if exported_graph:
            order.sort(key=lambda n: _has_exporter_metadata(n))
        for node in order:
            entry = describe_node(node, model)
            entry["relative_error"] = suspect["relative_error"]
            entry["value"] = suspect["output"]
            ranked.append(entry)
    return ranked


@dataclass
class _Setup:
    """What localizing needs from the built case: the model flattened, its example and the probe's feeds."""

    built: Any
    flat: Any
    example: Any
    signature: Any
    frozen: dict[str, Any]
    output_names: list[str]
    live_names: list[str]
    feeds: dict[str, np.ndarray]
    transform: Any

    def dynamo_export(self, transform: Any = None) -> tuple[Any, Any]:
        return _dynamo_export(
            self.flat.for_export(),
            self.example,
            self.signature,
            self.frozen,
            self.output_names,
            self.built,
            self.transform if transform is None else transform,
        )


def _on_the_graph_that_ran(
    graph, own_export, reference: str, candidate, setup: _Setup, result: Localization
) -> tuple[Any, dict[str, np.ndarray]] | None:
    """(the graph the candidate ran, the reference's values on it): eager's FX values where they map onto the
    graph's value names, else a runtime's on the same graph (see ``localize``)."""
    import onnx

    model = onnx.load_from_string(graph.onnx_bytes)
    if reference not in ("torch", "eager"):
        values = _reference_values(model, setup.feeds, reference, result)
        return None if values is None else (model, values)
    program = graph.program if graph.exporter == "dynamo" else getattr(own_export, "program", None)
    if program is None:  # served from the export cache, or not a dynamo export: the FX program is made here
        program, _ = setup.dynamo_export(transform=[])
    values = _eager_values(program, setup.feeds, setup.live_names, [o.name for o in model.graph.output])
    if graph.exporter == "dynamo":
        return model, values
    # Another graph (the user's own file, a TorchScript export): eager's values are mapped onto it only where a
    # value of the same name is made by the same operator in difftest's own dynamo export.
    values, shared = _shared_values(model, program.model_proto, values)
    if shared:
        result.note = (
            f"the candidate ran {_graph_words(graph.exporter)}: eager's values were mapped onto {shared} "
            "of its values that difftest's own dynamo export makes under the same name with the same "
            "operator"
        )
        return model, values
    reference = "ort-cpu" if candidate.backend == "onnx-ref" else "onnx-ref"
    result.reference = reference
    result.note = (
        f"the candidate ran {_graph_words(graph.exporter)}, whose values share no names with difftest's "
        f"own dynamo export, so eager's values cannot be mapped onto them: localized against {reference} "
        "on the same graph, which finds where the runtime departs from the graph's meaning, not a fault "
        "in the graph itself"
    )
    values = _reference_values(model, setup.feeds, reference, result)
    return None if values is None else (model, values)


def _on_a_fresh_export(
    reference: str, candidate, setup: _Setup, result: Localization
) -> tuple[Any, dict[str, np.ndarray]] | None:
    """(the candidate's graph exported here, the reference's values on it), for ``difftest localize``."""
    import onnx

    built = setup.built
    exporter = candidate.get("exporter") or built.exporter or "dynamo"
    if reference in ("torch", "eager"):
        if exporter != "dynamo":
            result.status, result.reason = (
                "unsupported",
                (
                    "localizing against eager maps ONNX values to the dynamo exporter's FX node names; this candidate "
                    "uses the TorchScript exporter. Localize it against another runtime on the same graph instead "
                    "(--reference ort-cpu), or with exporter=dynamo."
                ),
            )
            return None
        program, model = setup.dynamo_export()
        return model, _eager_values(program, setup.feeds, setup.live_names, setup.output_names)
    from ..export.exporter import export

    live_example = tuple(t for n, t in zip(setup.signature.names, setup.example) if n not in setup.frozen)
    exported = export(
        setup.flat.for_export(),
        live_example,
        setup.output_names,
        exporter=exporter,
        opset=built.opset,
        dynamic_axes=built.dynamic_axes,
        transform=setup.transform,
    )
    if not exported.ok:
        result.status, result.reason = "unsupported", f"the export failed: {exported.error[:300]}"
        return None
    model = onnx.load_from_string(exported.onnx_bytes)
    values = _reference_values(model, setup.feeds, reference, result)
    return None if values is None else (model, values)


def _shared_values(model, own_model, values: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Eager's ``values`` kept where ``model`` has a value of the same name made by the same operator type as in
    ``own_model`` (difftest's own dynamo export, whose value names are eager's FX node names), plus the graph's
    outputs; and how many intermediate values were shared."""

    def producers(graph_model) -> dict[str, str]:
        return {out: node.op_type for node in graph_model.graph.node for out in node.output}

    mine, theirs = producers(own_model), producers(model)
    outputs = {o.name for o in model.graph.output}
    shared = {name for name, op in theirs.items() if name not in outputs and mine.get(name) == op and name in values}
    return {k: v for k, v in values.items() if k in shared or k in outputs}, len(shared)


def _graph_words(exporter: str) -> str:
    from ..backends.candidates import USER_FILE

    return "the case's own ONNX file" if exporter == USER_FILE else f"the {exporter} exporter's graph"


def _eager_values(
    program, feeds: dict[str, np.ndarray], live_names: list[str], output_names: list[str]
) -> dict[str, np.ndarray]:
    """Eager's value of every FX node of the dynamo export's program on ``feeds``, under the node names the ONNX
    graph's values carry (and the graph outputs under their output names)."""
    import torch

    live = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in live_names]
    values = torch_values(program.exported_program, live)
    values.update({name: values.get(fx, None) for name, fx in zip(output_names, _fx_outputs(program)) if fx in values})
    return {k: v for k, v in values.items() if v is not None}


def _reference_values(
    model, feeds: dict[str, np.ndarray], reference: str, result: Localization
) -> dict[str, np.ndarray] | None:
    """Every value of ``model`` on the reference runtime, or None (with ``result`` saying why) when it cannot run."""
    from ..backends.candidates import make, parse

    reference_backend = make(parse(reference))
    unavailable = reference_backend.unavailable_reason()
    if unavailable:
        result.status, result.reason = "unsupported", f"the reference {reference} is not available here: {unavailable}"
        return None
    return evaluate(model, _all_values(model), feeds, reference_backend)


def _dynamo_export(flat, example, signature, frozen, output_names, built, transform):
    import warnings

    import torch

    from ..export.exporter import reset_dynamo, reuse_torchlib_registry

    reuse_torchlib_registry()
    reset_dynamo()
    live_example = tuple(t for n, t in zip(signature.names, example) if n not in frozen)
    options: dict[str, Any] = {"input_names": list(flat.live_names), "output_names": list(output_names)}
    axes = {k: v for k, v in (built.dynamic_axes or {}).items() if k in flat.live_names}
    if axes:
        options["dynamic_shapes"] = (
            tuple({int(a): torch.export.Dim.DYNAMIC for a in axes.get(n, {})} or None for n in flat.live_names),
        )
    if built.opset:
        options["opset_version"] = built.opset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(flat, live_example, dynamo=True, verbose=False, **options)
        except Exception:
            if "dynamic_shapes" not in options:
                raise
            # torch 2.13 can refuse a second dynamic-shape export of some modules in one process (nn.LSTM:
            # "tracing inferred a static shape"); the probe's own shapes are all localization needs.
            options.pop("dynamic_shapes")
            reset_dynamo()
            program = torch.onnx.export(flat, live_example, dynamo=True, verbose=False, **options)
    model = program.model_proto
    for _, step in transform:
        model = step(model)
    return program, model


def _fx_outputs(program) -> list[str]:
    """FX node names behind the program's outputs, in order (the ONNX outputs were renamed by output_names)."""
    nodes = [n for n in program.exported_program.graph.nodes if n.op == "output"]
    if not nodes:
        return []
    args = nodes[0].args[0]
    return [getattr(a, "name", "") for a in (args if isinstance(args, (tuple, list)) else [args])]


def _all_values(model) -> list[str]:
    return [o for node in model.graph.node for o in node.output if o]


def _confirm(
    model,
    suspect: dict[str, Any],
    ref_values,
    feeds,
    backend,
    candidate_spec: str,
    result: Localization,
    out_dir: Path | None,
) -> None:
    """Rerun the culprit's region alone on the reference's inputs: does it reproduce the discrepancy?"""
    output = suspect["output"]
    repro, values = extract_region(
        model,
        suspect["nodes"] if suspect["node"] in suspect["nodes"] else [*suspect["nodes"], suspect["node"]],
        output,
        ref_values,
        feeds,
    )
    if repro is None:
        result.reproduced = None
        return
    got = evaluate(repro, [output], values, backend).get(output)
    if got is None:
        return
    result.reproduced = diverges(ref_values[output], got)[0]
    if out_dir is not None and result.reproduced:
        summary = {k: getattr(result, k) for k in ("candidate", "reference", "probe", "reason")}
        summary["culprit"] = {k: result.culprit[k] for k in ("name", "op_type", "module", "source")}
        result.repro = str(
            save_bundle(out_dir, repro, values, ref_values[output], output, candidate_spec, got, summary)
        )


def _bisect_optimizer(model, candidate, ref_values, feeds, final: list[str]) -> str | None:
    """When the gap closes with ORT's graph optimizations off: the first level that reopens it, then the one
    optimizer whose removal closes it again (where ORT lets it be disabled)."""
    from ..backends.candidates import make

    backend = make(candidate.without("opt"))
    # ORT's (``OrtCpu.session_for``): a backend with graph optimization levels and transformers to switch off
    if not hasattr(backend, "session_for") or "opt" not in backend.settings or candidate.get("opt") == "disable":
        return None
    data = model.SerializeToString()

    def diverging(opt: str, disabled: list[str] | None = None) -> bool:
        outputs = run_graph(backend, data, feeds, lambda b: backend.session_for(b, opt, disabled))
        return any(n in ref_values and diverges(ref_values[n], outputs[n])[0] for n in final if n in outputs)

    level = candidate.get("opt") or "all"
    if diverging("disable") or not diverging(level):
        return None
    first = next(opt for opt in OPT_LEVELS[1:] if diverging(opt))
    for name in ORT_OPTIMIZERS:
        if not diverging(first, [name]):
            return f"ORT optimization level {first}, optimizer {name} (the gap closes with it disabled)"
    return f"ORT optimization level {first} (no single optimizer from difftest's list closes the gap)"
