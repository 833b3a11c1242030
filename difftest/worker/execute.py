"""Run one case through every backend, inside a worker process.

Builds the case from its recipe, exports it once per distinct export, chooses the probes (more of them when
an exporter warned that its trace may not generalize), runs the reference and each candidate on every
probe, runs the automatic controls for candidates that fail, and returns plain rows for the ``cases`` and
``tensors`` tables. The model is guarded throughout (see ``state_guard``): every stage sees it as the
factory made it. A failing model is rows with a status and a message; only a bug in difftest raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import REGISTRY, Subject
from ..errors import OutputError
from ..export.exporter import ExportResult, describe_exception, export, traced_warnings
from ..record.names import INPUTS, RESEEDED, pseudo_backend, slug
from ..record.tables import tensor_row
from ..suite.cases import Case, CaseDefinitionError, CaseSkipped, build
from .backend_run import record_export, record_graph_evidence, run_backend
from ..backends.candidates import USER_FILE  # the export name of the user's own ONNX file (``Case(onnx=...)``)
from .case_run import CaseRow, CaseRun, record
from .task import RESEED, Task, enter_stage, seed, user_traceback


def run_task(task: Task) -> dict[str, Any]:
    """Build the case the task names and run it; returns {"case": row, "tensors": [rows]}."""
    return run_definition(task)


def run_definition(task: Task, definition: Any = None) -> dict[str, Any]:
    """Build a case from its ``@case`` definition (found from the task's ref when not given: the pytest plugin
    gives the one it collected) and run it; returns {"case": row, "tensors": [rows]}."""
    started = time.perf_counter()
    row = CaseRow.for_task(task)
    try:
        from ..suite.discover import find_definition

        enter_stage("build")
        seed()
        definition = definition if definition is not None else find_definition(task.ref)
        row.tags = list(definition.tags)
        row.description = definition.doc
        if definition.options.get("expect") is not None:
            row.expect = definition.options["expect"]
        built = build(definition)
        _resolve_file(built, task.ref.path)
    except CaseSkipped as exc:
        row.update(status="skipped", stage="build", message=str(exc), seconds=time.perf_counter() - started)
        return record(row, [])
    except Exception as exc:
        row.update(status="error", stage="build", message=describe_exception(exc), traceback=user_traceback(exc))
        row.seconds = time.perf_counter() - started
        return record(row, [])
    return run_built(task, built, row, started)


def run_built(task: Task, built: Case, row: CaseRow | None = None, started: float | None = None) -> dict[str, Any]:
    """Run a case already built (by :func:`run_task` from its recipe, or by ``difftest.check`` from the caller's
    own model) through every backend; returns {"case": row, "tensors": [rows]}. A failing model gives rows with a
    status and a message; only a bug in difftest raises."""
    started = time.perf_counter() if started is None else started
    run = CaseRun(task, built, CaseRow.for_task(task) if row is None else row)
    row = run.row
    try:
        _describe(row, built, task)
    except Exception as exc:
        row.update(status="error", stage="build", message=describe_exception(exc), traceback=user_traceback(exc))
        row.seconds = time.perf_counter() - started
        return run.recorded()
    try:
        if built.onnx_test is not None:
            from .recorded_case import run_recorded

            run_recorded(run)
        elif built.module is None and built.onnx is not None:
            from .bare_onnx import run_bare

            run_bare(run)
        else:
            _run(run)
    except (CaseDefinitionError, OutputError) as exc:  # the case, as written, cannot be judged: not a verdict
        row.update(status="error", stage="definition", message=describe_exception(exc), traceback=user_traceback(exc))
    except Exception as exc:
        row.update(
            status="error",
            stage=row.stage or "harness",
            message=describe_exception(exc),
            traceback=user_traceback(exc),
        )
    row.seconds = time.perf_counter() - started
    return run.recorded()


def _resolve_file(built: Case, suite_path: str) -> None:
    """``@case(onnx="model.onnx")`` names a file relative to the suite file that declares it (as a user reads it),
    unless it exists relative to where the run started."""
    if isinstance(built.onnx, (str, Path)) and not Path(built.onnx).is_absolute() and not Path(built.onnx).exists():
        beside = Path(suite_path).parent / built.onnx
        if beside.exists():
            built.onnx = str(beside)


def _describe(row: CaseRow, built: Case, task: Task) -> None:
    row.tags = sorted(set(row.tags or []) | set(built.tags or ()))
    row.description = built.description
    row.exporter = (
        "recorded"
        if built.onnx_test
        else USER_FILE
        if built.onnx is not None
        else (task.exporter or built.exporter or "dynamo")
    )
    row.reference = "recorded" if built.onnx_test else task.reference
    if built.module is None and built.onnx is not None:  # a bare ONNX file: runtime against runtime
        from .bare_onnx import reference_for

        row.reference = reference_for(task.backends)
    row.expect = built.expect
    row.tolerances = {
        "rtol": built.rtol,
        "atol": built.atol,
        "per_output": {name: list(pair) for name, pair in (built.tolerances or {}).items()},
        "output_masks": dict(built.output_masks or {}),
    }
    row.rewrites = [
        name
        for name, present in (
            ("onnx_transform", built.onnx_transform is not None),
            ("bake_kwargs", bool(built.bake_kwargs)),
        )
        if present
    ]
    if built.expect is not None:
        from ..judge.expectations import validate_expect

        problem = validate_expect(built.expect)
        if problem:
            raise CaseDefinitionError(f"expect={built.expect!r}: {problem}")
    warnings = []
    from ..judge.next_step import training_warning

    training = training_warning(built.module)  # names the modules that compute otherwise in training
    if training:
        warnings.append(training)
    warnings.extend(_dtype_warnings(built))
    row.warnings = warnings


def _dtype_warnings(built: Case) -> list[str]:
    """Floating inputs whose dtype differs from the model's parameters: eager may fail or silently upcast."""
    import torch

    params = getattr(built.module, "parameters", None)
    dtypes = {p.dtype for p in params()} if callable(params) else set()
    float_params = {d for d in dtypes if d.is_floating_point}
    if len(float_params) != 1:
        return []
    (expected,) = float_params
    inputs = list(enumerate(built.args)) + list((built.kwargs or {}).items())
    return [
        f"input {name!r} is {value.dtype} but the model's parameters are {expected}: cast it in the factory "
        "if that is not intended"
        for name, value in inputs
        if isinstance(value, torch.Tensor) and value.dtype.is_floating_point and value.dtype != expected
    ]


def _run(run: CaseRun) -> None:
    """A case with a PyTorch model: the reference's first forward, the exports, the probes, then every candidate
    and the evidence, controls and localization their differences call for."""
    import torch

    from ..backends.candidates import parse
    from ..suite.model_io import FlatModule, flatten_outputs, signature_of, to_feeds
    from .full_compare import FullComparisons
    from .state_guard import ModelGuard

    task, built, row = run.task, run.built, run.row
    run.guard = guard = ModelGuard.record(built.module)
    row.stage = "build"
    signature, example = signature_of(built.module, built.args, dict(built.kwargs or {}), built.bake_kwargs)
    row.inputs = list(signature.names)
    unknown_axes = sorted(set(built.dynamic_axes or {}) - set(signature.names))
    if unknown_axes:
        raise CaseDefinitionError(
            f"dynamic_axes names input(s) {', '.join(unknown_axes)}, but the case's tensor inputs are named "
            f"{', '.join(signature.names) or '(none)'} (from the forward signature and the kwargs' keys)"
        )
    base_feeds = to_feeds(signature.names, example)  # copies, taken before any stage can touch the tensors
    frozen = {name: example[signature.names.index(name)] for name in signature.baked}
    flat = FlatModule(built.module, signature)
    row.stage = "reference"
    enter_stage("reference")
    with torch.inference_mode():
        output_names, output_values = flatten_outputs(flat.call_inner(*_clones(example)))
    guard.check("the reference's first forward")
    row.outputs = output_names = _named_outputs(built, output_names)
    file = None
    if built.onnx is not None:  # the user's own file runs where difftest's export would: bound to the model first
        file = _bind_file(built, row, base_feeds, output_names, output_values)
        row.outputs = output_names = file.binding.outputs
    if built.output_masks:
        from ..judge.masks import declaration_problem

        problem = declaration_problem(
            dict(built.output_masks), base_feeds, {n: tuple(v.shape) for n, v in zip(output_names, output_values)}
        )
        if problem:
            raise CaseDefinitionError(problem)
    row.stage = None

    run.candidates = [parse(spec) for spec in task.backends]
    run.exports = CaseExports(task, built, signature, example, frozen, output_names, row, guard, file)
    for key in _export_order(run.candidates, row.exporter):
        run.exports.get(key)
    row.export_warnings = run.exports.warnings()
    run.probes = _make_probes(task, built, signature.names, base_feeds, traced_warnings(row.export_warnings))
    row.probes = list(run.probes)
    for probe, feeds in run.probes.items():
        for index, (name, array) in enumerate(feeds.items()):
            run.tensors.append(
                tensor_row(task, INPUTS, probe, output=name, index=index, array=array, max_bytes=task.max_tensor_bytes)
            )
    run.subject = Subject(module=built.module, input_names=list(signature.names), output_names=output_names, call=flat)
    scratch = Path(task.artifacts_dir).parent / "scratch" / slug(task.ref.id)
    run.full = FullComparisons(task.reference, task.max_tensor_bytes, scratch, row.tolerances or {})
    try:
        _run_candidates(run)
        _record_evidence(run)
        _controls_and_localization(run)
    finally:
        run.full.close()


def _run_candidates(run: CaseRun) -> None:
    """Every candidate on every probe (its export first, for one that runs a graph); eager once more with another
    seed."""
    task, row, guard = run.task, run.row, run.guard
    for candidate in run.candidates:
        backend = REGISTRY[candidate.backend](threads=task.threads, options=dict(candidate.settings))
        run_subject = run.subject
        if backend.needs_onnx:
            exported = run.exports.get(candidate.export_key(row.exporter))
            if not exported.ok:
                run.tensors.append(
                    tensor_row(task, candidate.name, "*", status="error", stage=exported.stage, message=exported.error)
                )
                continue
            run_subject = run.subject.with_graph(exported)
        after_run = guard.check if backend.runs_the_model else None
        reruns = 0 if candidate.name in (task.reference_variants or ()) else task.reruns
        run_backend(
            task,
            backend,
            run_subject,
            run.probes,
            run.tensors,
            reruns,
            name=candidate.name,
            after_run=after_run,
            full=run.full,
        )
        if candidate.name == task.reference and not backend.needs_onnx:
            # Once more with another seed: an output that changes comes from a model that samples, and is judged
            # by what sampling keeps (see judge.randomness), never by eager's one draw.
            run_backend(
                task,
                backend,
                run_subject,
                run.probes,
                run.tensors,
                0,
                name=RESEEDED,
                after_run=after_run,
                seed_value=RESEED,
            )


def _record_evidence(run: CaseRun) -> None:
    """Where a candidate differs: the graph's own evidence (ranked values, summation magnitudes), eager's index
    ops, and the inputs of float-to-int casts behind integer differences."""
    from ..backends.candidates import export_name

    task, tensors, probes, outputs = run.task, run.tensors, run.probes, run.subject.output_names
    differing = _differing_outputs(task, run.row, tensors, run.candidates)
    for key, exported in run.exports.done.items():
        name = export_name(key)
        if exported.ok and differing.get(name):
            wanted = {p: feeds for p, feeds in probes.items() if p in differing[name]}
            record_graph_evidence(task, exported.onnx_bytes, outputs, wanted, tensors, name)
    differing_probes = {p for found in differing.values() for p in found}
    if differing_probes:  # are differing indices ties? Eager's own values say (see ``eager_ranked``)
        from .eager_ranked import record_eager_ranked

        wanted = {p: feeds for p, feeds in probes.items() if p in differing_probes}
        record_eager_ranked(task, run.subject, wanted, tensors, run.guard.check)
    integer_probes = _integer_differences(task, tensors)
    for key, exported in run.exports.done.items():  # is an undefined float-to-int conversion behind the difference?
        if exported.ok and exported.float_to_int_casts and integer_probes:
            wanted = {p: feeds for p, feeds in probes.items() if p in integer_probes}
            record_graph_evidence(
                task, exported.onnx_bytes, outputs, wanted, tensors, export_name(key), kinds=("cast_inputs",)
            )


def _controls_and_localization(run: CaseRun) -> None:
    """The controls of the candidates that fail on values, the other exporter for an export that failed, what the
    guard restored, and the localization of each failing ONNX candidate."""
    task, built, row, exports = run.task, run.built, run.row, run.exports
    failing: dict[str, set[str]] = {}
    if task.control_budget > 0 or task.localize_budget > 0:
        from .controls import failing_candidates

        failing = failing_candidates(task, row, run.tensors)  # judged once, for the controls and the localization
    if task.control_budget > 0:
        from .controls import run_controls
        from .export_control import try_other_exporter

        def graph_for(candidate: Any) -> Subject | None:
            if not REGISTRY[candidate.backend].needs_onnx:
                return run.subject
            exported = exports.get(candidate.export_key(row.exporter))
            return run.subject.with_graph(exported) if exported.ok else None

        without_rewrite = None
        if built.onnx_transform is not None:

            def without_rewrite(candidate: Any) -> ExportResult:
                return exports.raw(candidate.export_key(row.exporter))

        own = own_exporter(task, built) if built.onnx is not None else None
        run_controls(task, row, run.tensors, run.probes, graph_for, built.module, without_rewrite, failing, own)
        try_other_exporter(row, run.candidates, exports)  # an export that failed: does the other exporter take it?
    row.state_changes = run.guard.summary()
    if task.localize_budget > 0:
        from .auto_localize import localize_failures

        localize_failures(task, built, run.candidates, failing, row, exports)


def own_exporter(task: Task, built: Case) -> str:
    """The exporter difftest uses itself: the run's, else the case's, else dynamo (for a case with its own file,
    the control that says whether the file or the model is to blame)."""
    return task.exporter or built.exporter or "dynamo"


def _named_outputs(built: Case, found: list[str]) -> list[str]:
    """The case's own names for its flattened outputs (``output_names=``), checked against what the model returned."""
    if not built.output_names:
        return found
    names = [str(n) for n in built.output_names]
    if len(names) != len(found) or len(set(names)) != len(names):
        raise CaseDefinitionError(
            f"output_names={names!r} names {len(names)} "
            f"outputs{' (some twice)' if len(set(names)) != len(names) else ''}"
            f", but the model returns {len(found)} tensors ({', '.join(found)}); give one distinct name per output"
        )
    return names


@dataclass
class BoundFile:
    """The user's ONNX file as bound to the model (see ``export.onnx_file``)."""

    model: Any  # the ModelProto the runtimes get (inputs renamed to the model's where the file names them otherwise)
    binding: Any
    digest: str


def _bind_file(
    built: Case, row: CaseRow, feeds: dict[str, np.ndarray], output_names: list[str], output_values: list[Any]
) -> BoundFile:
    """Load the case's ONNX file and line it up with the model, before any candidate runs; a file that does not
    line up is the case's definition error, with both sides listed."""
    from ..export import onnx_file
    from ..suite.model_io import to_numpy

    row.stage = "load"
    enter_stage("load")
    try:
        model = onnx_file.load(built.onnx)
        binding = onnx_file.bind(model, list(feeds), feeds, output_names, [to_numpy(v) for v in output_values])
    except onnx_file.OnnxFileError as exc:
        raise CaseDefinitionError(str(exc)) from None
    row.add_warnings(*binding.notes, *onnx_file.dynamic_axes_problems(binding, built.dynamic_axes))
    # Probes vary what the file declares dynamic, under the file's names; difftest's own export (the control)
    # is made with the same dynamic axes.
    built.dynamic_axes = binding.dynamic_axes or None
    return BoundFile(onnx_file.bound_model(model, binding), binding, onnx_file.digest(built.onnx))


def _differing_outputs(
    task: Task, row: CaseRow, tensors: list[dict[str, Any]], candidates: list[Any]
) -> dict[str, set[str]]:
    """Export name (or, for a candidate that runs the model, its name) -> the probes on which a candidate differs
    from the reference beyond the case's tolerance. Evidence (ranked values, summation magnitudes, eager's index
    ops) is only worth gathering there."""
    from ..backends.candidates import export_name
    from ..judge.classify import output_tolerance, tolerance_for
    from ..judge.compare import bit_identical, within
    from ..record.tables import decode

    tolerances = row.tolerances or {}
    reference = {
        (t["probe"], t["output"]): t
        for t in tensors
        if t["backend"] == task.reference and t["status"] == "ok" and not t["rerun"] and t["output"]
    }
    found: dict[str, set[str]] = {}
    for candidate in candidates:
        if candidate.name in (task.reference_variants or ()):
            continue  # the float64 oracle differs by design
        if REGISTRY[candidate.backend].needs_onnx:
            name = export_name(candidate.export_key(row.exporter))
        else:
            name = candidate.name
        for t in tensors:
            if t["backend"] != candidate.name or t["status"] != "ok" or t["rerun"] or not t["output"]:
                continue
            ref_row = reference.get((t["probe"], t["output"]))
            if ref_row is None or t["probe"] in found.get(name, ()):
                continue
            if ref_row.get("digest") == t.get("digest") and ref_row["dtype"] == t["dtype"]:
                continue
            ref, cand = decode(ref_row), decode(t)
            if ref.shape != cand.shape or ref.dtype != cand.dtype or ref.dtype.kind not in "fc":
                found.setdefault(name, set()).add(t["probe"])
                continue
            if bit_identical(ref, cand):
                continue
            if not within(ref, cand, *tolerance_for(ref, *output_tolerance(tolerances, t["output"]))).all():
                found.setdefault(name, set()).add(t["probe"])
    return found


def _integer_differences(task: Task, tensors: list[dict[str, Any]]) -> set[str]:
    """The probes on which any candidate (eager ones included) returns an integer output that is not bit-identical
    to the reference's: where the values a float-to-integer Cast converts are worth evaluating."""
    reference = {
        (t["probe"], t["output"]): t
        for t in tensors
        if t["backend"] == task.reference and t["status"] == "ok" and not t["rerun"] and t["output"]
    }
    found: set[str] = set()
    for t in tensors:
        if t["backend"] == task.reference or pseudo_backend(t["backend"]) or t["status"] != "ok" or not t["output"]:
            continue
        ref_row = reference.get((t["probe"], t["output"]))
        if ref_row is None or not ref_row["dtype"].startswith(("int", "uint", "bool")):
            continue
        if ref_row.get("digest") != t.get("digest"):
            found.add(t["probe"])
    return found


def _export_order(candidates: list[Any], default_exporter: str) -> list[tuple[str, str | None]]:
    """The exports the candidates need, the case's own one first (its fields describe the case)."""
    keys = [c.export_key(default_exporter) for c in candidates if REGISTRY[c.backend].needs_onnx]
    default = (default_exporter, None)
    ordered = [default] if default in keys else []
    for key in keys:
        if key not in ordered:
            ordered.append(key)
    return ordered


def _make_probes(
    task: Task, built: Case, names: list[str], base_feeds: dict[str, np.ndarray], traced: list[str]
) -> dict[str, dict[str, np.ndarray]]:
    from ..suite.model_io import to_feeds
    from ..suite.probes import DEFAULT_PROBES, DISTRIBUTION_PROBES, make_probes

    allowed = list(built.probes or DEFAULT_PROBES)
    selected = [p for p in task.probes if p in allowed]
    if traced and "alt" in selected:
        # The exporter warned that it froze a data-dependent decision: move the inputs out of its branch.
        selected += list(DISTRIBUTION_PROBES)
    custom = {name: to_feeds(list(sample), list(sample.values())) for name, sample in (built.samples or {}).items()}
    return make_probes(base_feeds, selected, built.dynamic_axes, custom)


class CaseExports:
    """Each distinct (exporter, transform) of a case, exported once (or read from the cache) and shared by
    the candidates that run it. The model is checked by the guard after every export."""

    def __init__(
        self,
        task: Task,
        built: Case,
        signature: Any,
        example: list[Any],
        frozen: dict[str, Any],
        output_names: list[str],
        row: CaseRow,
        guard: Any,
        file: BoundFile | None = None,
    ):
        self.task, self.built, self.signature, self.example = task, built, signature, example
        self.frozen, self.output_names, self.row, self.guard = frozen, output_names, row, guard
        self.file = file
        self.done: dict[tuple[str, str | None], ExportResult] = {}
        self.keys: dict[tuple[str, str | None], str] = {}  # cache keys, which also key cached localizations

    def get(self, key: tuple[str, str | None]) -> ExportResult:
        if key not in self.done:
            self.done[key], self.keys[key] = self._export(key)
            record_export(self.row, key, self.done[key], self.signature.names, self.task)
        return self.done[key]

    def raw(self, key: tuple[str, str | None]) -> ExportResult:
        """The export without the case's own onnx_transform (a control: did the case's rewrite make the gap?)."""
        return self._export(key, with_case_rewrite=False)[0]

    def _export(self, key: tuple[str, str | None], with_case_rewrite: bool = True) -> tuple[ExportResult, str | None]:
        """The export and its cache key (None without a cache)."""
        from ..backends.candidates import export_name
        from ..export.transforms import steps
        from ..suite.model_io import FlatModule

        exporter, named = key
        enter_stage(f"export ({export_name(key)})")
        seed()
        transform = steps(self.built.onnx_transform if with_case_rewrite else None, named)
        if exporter == USER_FILE:
            return self._file(transform), (f"file-{self.file.digest}-{named or ''}" if self.file else None)
        cache, cache_key = None, None
        if self.task.cache_dir:
            from ..export.cache import ExportCache, export_key

            cache = ExportCache(self.task.cache_dir)
            sig = self.signature
            cache_key = export_key(
                self.task.ref.id,
                self.task.ref.path,
                self.built.module,
                list(zip(sig.names, self.example)),
                {
                    "exporter": exporter,
                    "transform": named,
                    "transform_fn": transform,
                    "opset": self.built.opset,
                    "dynamic_axes": self.built.dynamic_axes,
                    "outputs": self.output_names,
                    "frozen": sorted(self.frozen),
                    "arg_constants": [repr(c) for c, slot in zip(sig.arg_constants, sig.arg_slots) if slot is None],
                    "kw_constants": repr(sig.kw_constants),
                },
            )
            cached = cache.get(cache_key)
            if cached is not None:
                cached.cached = True
                return cached, cache_key
        live = tuple(t.clone() for n, t in zip(self.signature.names, self.example) if n not in self.frozen)
        result = export(
            FlatModule(self.built.module, self.signature, self.frozen).for_export(),
            live,
            self.output_names,
            exporter=exporter,
            opset=self.built.opset,
            dynamic_axes=self.built.dynamic_axes,
            transform=transform,
        )
        self.guard.check(f"the {exporter} export")
        if cache is not None:
            cache.put(cache_key, result)
        return result, cache_key

    def _file(self, transform: list[tuple[str, Any]]) -> ExportResult:
        """The user's file, after the case's and the candidate's transforms, described like an export."""
        from ..export.exporter import described

        started = time.perf_counter()
        if self.file is None:
            return ExportResult(
                USER_FILE,
                0.0,
                error=(
                    "exporter=file runs the case's own ONNX file, and this case has none: give it one with "
                    "Case(..., onnx='model.onnx') (or check(..., onnx=...)), or drop exporter=file"
                ),
            )
        import onnx

        model = onnx.ModelProto()
        model.CopyFrom(self.file.model)  # the transforms edit in place; the file stays as given for the next one
        return described(USER_FILE, model, transform, started)

    def warnings(self) -> list[str]:
        found: list[str] = []
        for exported in self.done.values():
            for warning in exported.warnings:
                if warning not in found:
                    found.append(warning)
        return found


def _clones(tensors: list[Any]) -> list[Any]:
    return [t.clone() for t in tensors]
