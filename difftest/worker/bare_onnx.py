"""A bare ONNX file (``difftest run model.onnx``): no PyTorch model, runtime against runtime.

The reference is ``onnx-ref`` (the ONNX specification's reference implementation); where it cannot run the graph
(too large for numpy, an op it lacks), the first listed runtime that can, said on the case. The oracle is the same
graph widened to float64
(``export.float64``) on the reference evaluator, where the graph allows it; where it does not, the case says why
and is judged without one. Inputs are the graph's declared types and shapes, filled by a seeded generator within
each input's value range (``--val-range name:[lo,hi]``, default [0, 1] as Polygraphy's; integers within it, bools
at random), symbolic dims from ``--input-shapes name:1x3x224x224`` (else 1, said on the case); or loaded from
``--inputs`` (an ``.npz`` of arrays named after the inputs, a folder of ``input_<i>.pb`` TensorProtos, or an ONNX
test folder's ``test_data_set_*``). Probes: ``base`` (the inputs), ``alt`` (another draw), ``shape`` (every
named symbolic dim one larger, dims that share a name together), and each further loaded data set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import REGISTRY, Subject
from ..backends.candidates import USER_FILE
from ..export.exporter import ExportResult, described
from ..record.names import INPUTS
from ..record.tables import tensor_row
from ..suite.cases import CaseDefinitionError
from .backend_run import record_export, record_graph_evidence, run_backend
from .task import Task, enter_stage
from .case_run import CaseRow, CaseRun

SPEC_REFERENCE = "onnx-ref"
FP64_ORACLE = "onnx-ref-fp64"  # the graph widened to float64 on the reference evaluator (a pseudo-backend)
DEFAULT_RANGE = (0.0, 1.0)
BARE_PROBES = ("base", "alt", "shape")


@dataclass
class InputSpec:
    """How a bare file's inputs are made: symbolic dims, value ranges, or data to load (a run's options)."""

    shapes: dict[str, list[int]]
    ranges: dict[str, tuple[float, float]]
    data: str | None = None

    @classmethod
    def of(cls, options: dict[str, Any] | None) -> "InputSpec":
        options = options or {}
        return cls(
            {k: [int(d) for d in v] for k, v in (options.get("shapes") or {}).items()},
            {k: (float(v[0]), float(v[1])) for k, v in (options.get("ranges") or {}).items()},
            options.get("data"),
        )


def reference_for(backends: list[str]) -> str:
    """The reference a bare ONNX case starts with: the ONNX specification's reference implementation (where it
    cannot run the graph, ``run_bare`` falls back to the first listed runtime that can, and says so)."""
    return SPEC_REFERENCE


def _fallback_reference(task: Task, row: CaseRow, tensors: list[dict[str, Any]], ran: list[str]) -> None:
    """When the reference recorded no output (onnx-ref refused the graph: too large, an op it lacks), the first
    listed runtime that ran becomes the reference, and the case says why."""
    reference = row.reference
    if any(t["backend"] == reference and t["status"] == "ok" for t in tensors):
        return
    why = next((t["message"] for t in tensors if t["backend"] == reference and t["message"]), "no output recorded")
    for name in ran:
        if name != reference and any(t["backend"] == name and t["status"] == "ok" for t in tensors):
            row.reference = name
            row.add_warnings(
                f"{reference} cannot run this graph ({str(why).splitlines()[0][:200]}): {name} is the reference "
                "instead, so the verdicts say whether the runtimes agree, not whether they follow the specification"
            )
            return


def run_bare(run: CaseRun) -> None:
    """A bare ONNX file: runtime against runtime on inputs made from the graph (or loaded), the graph widened to
    float64 as the oracle."""
    from ..backends.candidates import export_name, parse
    from ..export import onnx_file
    from ..export.transforms import steps

    task, built, row, tensors = run.task, run.built, run.row, run.tensors

    row.stage = "load"
    enter_stage("load")
    try:
        model = onnx_file.load(built.onnx)
    except onnx_file.OnnxFileError as exc:
        raise CaseDefinitionError(str(exc)) from None
    inputs, outputs = onnx_file.graph_inputs(model), onnx_file.graph_outputs(model)
    row.inputs, row.outputs = [v.name for v in inputs], [v.name for v in outputs]
    spec = InputSpec.of(task.onnx_inputs)
    notes: list[str] = []
    probes = _probes(inputs, spec, notes, [p for p in task.probes if p in BARE_PROBES] or ["base"])
    row.add_warnings(*notes)
    row.probes = list(probes)
    row.stage = None
    for probe, feeds in probes.items():
        for index, (name, array) in enumerate(feeds.items()):
            tensors.append(
                tensor_row(task, INPUTS, probe, output=name, index=index, array=array, max_bytes=task.max_tensor_bytes)
            )
    exports: dict[tuple[str, str | None], ExportResult] = {}

    def model_for(key: tuple[str, str | None]) -> ExportResult:
        if key not in exports:
            import time

            import onnx

            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            exports[key] = described(USER_FILE, copy, steps(built.onnx_transform, key[1]), time.perf_counter())
            record_export(row, key, exports[key], row.inputs, task)
        return exports[key]

    graph = Subject(None, list(row.inputs), list(row.outputs), None)  # no PyTorch model: graphs only
    reference = row.reference
    order = [reference] + [b for b in task.backends if b != reference]
    for spec_name in order:
        candidate = parse(spec_name)
        backend = REGISTRY[candidate.backend](threads=task.threads, options=dict(candidate.settings))
        if not backend.needs_onnx:
            if spec_name not in (task.reference_variants or ()):
                tensors.append(
                    tensor_row(
                        task,
                        candidate.name,
                        "*",
                        status="skipped",
                        stage="session",
                        message=(
                            "not applicable: this case is a bare ONNX file: there is no PyTorch model to run; its "
                            f"reference is {reference}"
                        ),
                    )
                )
            continue
        exported = model_for((USER_FILE, candidate.get("transform")))
        if not exported.ok:
            tensors.append(
                tensor_row(task, candidate.name, "*", status="error", stage=exported.stage, message=exported.error)
            )
            continue
        run_backend(task, backend, graph.with_graph(exported), probes, tensors, task.reruns, name=candidate.name)
    _fallback_reference(task, row, tensors, order)
    _run_oracle(task, model, graph, probes, row, tensors)
    for key, exported in exports.items():
        if exported.ok:
            record_graph_evidence(task, exported.onnx_bytes, list(row.outputs), probes, tensors, export_name(key))
    if task.control_budget > 0:
        from .controls import run_controls

        def graph_for(candidate: Any) -> Subject | None:
            exported = model_for((USER_FILE, candidate.get("transform")))
            return graph.with_graph(exported) if exported.ok else None

        run_controls(task, row, tensors, probes, graph_for)


def _run_oracle(
    task: Task,
    model: Any,
    graph: Subject,
    probes: dict[str, dict[str, np.ndarray]],
    row: CaseRow,
    tensors: list[dict[str, Any]],
) -> None:
    """The graph in float64 on the reference evaluator, as the pseudo-backend ``onnx-ref-fp64``; why not, when not."""
    if not task.reference_variants:  # the run asked for no oracle (--no-oracle)
        return
    from ..export.float64 import widened

    enter_stage(f"run ({FP64_ORACLE})")
    try:
        wide = widened(model)
    except Exception as exc:
        tensors.append(
            tensor_row(
                task,
                FP64_ORACLE,
                "*",
                status="skipped",
                stage="session",
                message=f"the graph cannot be widened to float64: {type(exc).__name__}: {exc}",
            )
        )
        return
    backend = REGISTRY[SPEC_REFERENCE](threads=task.threads)
    wide_feeds = {
        probe: {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in feeds.items()}
        for probe, feeds in probes.items()
    }
    subject = graph.with_graph(
        ExportResult(FP64_ORACLE, 0.0, onnx_bytes=wide.SerializeToString(), graph_inputs=list(graph.input_names))
    )
    before = len(tensors)
    run_backend(task, backend, subject, wide_feeds, tensors, 0, name=FP64_ORACLE)
    failed = [t for t in tensors[before:] if t["status"] != "ok"]
    if failed:  # an oracle that does not run is no evidence: said on the case, its rows kept as skips
        for t in failed:
            t["status"], t["stage"] = "skipped", "session"
        row.add_warnings(
            f"no float64 oracle: the reference evaluator cannot run this graph in float64 "
            f"({(failed[0]['message'] or '').splitlines()[0][:200]}); verdicts rest on the reference alone"
        )


def _probes(
    inputs: list[Any], spec: InputSpec, notes: list[str], wanted: list[str]
) -> dict[str, dict[str, np.ndarray]]:
    unknown = sorted((set(spec.shapes) | set(spec.ranges)) - {v.name for v in inputs} - {"*"})
    if unknown:
        raise CaseDefinitionError(
            f"--input-shapes/--val-range name {', '.join(unknown)}, which the graph does not take; its inputs are "
            + ", ".join(v.describe() for v in inputs)
        )
    if spec.data:
        sets = load_inputs(Path(spec.data), [v.name for v in inputs])
        return {("base" if i == 0 else f"set_{i}"): feeds for i, feeds in enumerate(sets)}
    sizes: dict[str, int] = {}
    shapes = {v.name: _shape(v, spec, sizes, notes) for v in inputs}
    probes = {"base": _generate(inputs, shapes, spec, seed=0)}
    if "alt" in wanted:
        probes["alt"] = _generate(inputs, shapes, spec, seed=1)
    named = {d for v in inputs for d in (v.dims or []) if isinstance(d, str)}
    if "shape" in wanted and named and not spec.shapes:  # sizes the user chose are left as chosen
        bigger = {name: size + 1 for name, size in sizes.items()}
        other = {v.name: _shape(v, spec, dict(bigger), []) for v in inputs}
        probes["shape"] = _generate(inputs, other, spec, seed=2)
    return probes


def _shape(value: Any, spec: InputSpec, sizes: dict[str, int], notes: list[str]) -> list[int]:
    if value.name in spec.shapes:
        given = spec.shapes[value.name]
        if value.dims is not None and len(given) != len(value.dims):
            raise CaseDefinitionError(
                f"--input-shapes {value.name}: {len(given)} dims given, the graph declares {value.describe()}"
            )
        for axis, (dim, size) in enumerate(zip(value.dims or [], given)):
            if isinstance(dim, int) and dim != size:
                raise CaseDefinitionError(
                    f"--input-shapes {value.name}: axis {axis} is fixed to {dim} in the graph "
                    f"({value.describe()}), {size} was given"
                )
            if isinstance(dim, str):
                sizes.setdefault(dim, size)
        return list(given)
    if value.dims is None:
        raise CaseDefinitionError(
            f"input {value.name!r} declares no shape: give it with --input-shapes "
            f"{value.name}:DIMxDIM..., or pass --inputs"
        )
    shape = []
    for axis, dim in enumerate(value.dims):
        if isinstance(dim, int):
            shape.append(dim)
            continue
        if isinstance(dim, str) and dim in sizes:
            shape.append(sizes[dim])
            continue
        size = 1
        if isinstance(dim, str):
            sizes[dim] = size
        notes.append(
            f"input {value.name!r} axis {axis} ({dim or 'unnamed'}) is symbolic: fed {size}; choose with "
            f"--input-shapes {value.name}:" + "x".join(str(d if isinstance(d, int) else 1) for d in value.dims)
        )
        shape.append(size)
    return shape


def _generate(inputs: list[Any], shapes: dict[str, list[int]], spec: InputSpec, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in inputs:
        if value.dtype is None:
            raise CaseDefinitionError(f"input {value.name!r} has a type difftest cannot generate; pass --inputs")
        low, high = spec.ranges.get(value.name, spec.ranges.get("*", DEFAULT_RANGE))
        shape = shapes[value.name]
        dtype = np.dtype(value.dtype) if value.dtype != "bfloat16" else np.dtype(np.float32)
        if dtype == np.bool_:
            feeds[value.name] = rng.random(shape) < 0.5
        elif dtype.kind in "iu":
            feeds[value.name] = rng.integers(int(np.ceil(low)), int(np.floor(high)) + 1, size=shape).astype(dtype)
        elif dtype.kind == "c":
            feeds[value.name] = (rng.uniform(low, high, shape) + 1j * rng.uniform(low, high, shape)).astype(dtype)
        else:
            feeds[value.name] = rng.uniform(low, high, shape).astype(dtype)
    return feeds


def load_inputs(path: Path, names: list[str]) -> list[dict[str, np.ndarray]]:
    """Data sets from ``--inputs``: an .npz, a folder of input_<i>.pb, or a folder of test_data_set_* folders."""
    from ..suite.onnx_tests import OnnxTestError, read_pb

    if not path.exists():
        raise CaseDefinitionError(f"--inputs {path}: no such file or folder")
    if path.is_file():
        if path.suffix != ".npz":
            raise CaseDefinitionError(
                f"--inputs {path}: give an .npz file (arrays named after the graph's inputs) "
                "or a folder of input_<i>.pb files"
            )
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        missing = [n for n in names if n not in arrays]
        if missing:
            raise CaseDefinitionError(
                f"--inputs {path}: holds {', '.join(sorted(arrays)) or 'nothing'}, the graph "
                f"takes {', '.join(names)} (missing: {', '.join(missing)})"
            )
        return [{n: arrays[n] for n in names}]
    folders = sorted(path.glob("test_data_set_*")) or [path]
    sets = []
    try:
        for folder in folders:
            sets.append({name: read_pb(folder / f"input_{i}.pb") for i, name in enumerate(names)})
    except OnnxTestError as exc:
        raise CaseDefinitionError(f"--inputs: {exc}") from None
    return sets
