"""Run one case through every backend, inside a worker process.

Builds the case from its recipe, exports it once per distinct export, chooses the probes (more of them when
an exporter warned that its trace may not generalize), runs the reference and each candidate on every
probe, runs the automatic controls for candidates that fail, and returns plain rows for the ``cases`` and
``tensors`` tables. The model is guarded throughout (see ``state_guard``): every stage sees it as the
factory made it. A failing model is rows with a status and a message; only a bug in difftest raises.
"""

from __future__ import annotations

import json
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
from .task import RESEED, Task, enter_stage, seed, user_traceback


def run_task(task: Task) -> dict[str, Any]:
    """Build the case the task names and run it; returns {"case": row, "tensors": [rows]}."""
    return run_definition(task)


def run_definition(task: Task, definition: Any = None) -> dict[str, Any]:
    """Build a case from its ``@case`` definition (found from the task's ref when not given: the pytest plugin
    gives the one it collected) and run it; returns {"case": row, "tensors": [rows]}."""
    started = time.perf_counter()
    row = case_row(task)
    try:
        from ..suite.discover import find_definition

        enter_stage("build")
        seed()
        definition = definition if definition is not None else find_definition(task.ref)
        row["tags"] = list(definition.tags)
        row["description"] = definition.doc
        if definition.options.get("expect") is not None:
            row["expect"] = json.dumps(definition.options["expect"])
        built = build(definition)
        _resolve_file(built, task.ref.path)
    except CaseSkipped as exc:
        row.update(status="skipped", stage="build", message=str(exc))
        row["seconds"] = time.perf_counter() - started
        return {"case": row, "tensors": []}
    except Exception as exc:
        row.update(status="error", stage="build", message=describe_exception(exc), traceback=user_traceback(exc))
        row["seconds"] = time.perf_counter() - started
        return {"case": row, "tensors": []}
    return run_built(task, built, row, started)


def run_built(
    task: Task, built: Case, row: dict[str, Any] | None = None, started: float | None = None
) -> dict[str, Any]:
    """Run a case already built (by :func:`run_task` from its recipe, or by ``difftest.check`` from the caller's
    own model) through every backend; returns {"case": row, "tensors": [rows]}. A failing model gives rows with a
    status and a message; only a bug in difftest raises."""
    started = time.perf_counter() if started is None else started
    row = case_row(task) if row is None else row
    tensors: list[dict[str, Any]] = []
    try:
        _describe(row, built, task)
    except Exception as exc:
        row.update(status="error", stage="build", message=describe_exception(exc), traceback=user_traceback(exc))
        row["seconds"] = time.perf_counter() - started
        return {"case": row, "tensors": tensors}
    try:
        if built.onnx_test is not None:
            from .recorded_case import run_recorded

            run_recorded(task, built, row, tensors)
        elif built.module is None and built.onnx is not None:
            from .bare_onnx import run_bare

            run_bare(task, built, row, tensors)
        else:
            _run(task, built, row, tensors)
    except (CaseDefinitionError, OutputError) as exc:  # the case, as written, cannot be judged: not a verdict
        row.update(status="error", stage="definition", message=describe_exception(exc), traceback=user_traceback(exc))
    except Exception as exc:
        row.update(
            status="error",
            stage=row.get("stage") or "harness",
            message=describe_exception(exc),
            traceback=user_traceback(exc),
        )
    row["seconds"] = time.perf_counter() - started
    return {"case": row, "tensors": tensors}


def _resolve_file(built: Case, suite_path: str) -> None:
    """``@case(onnx="model.onnx")`` names a file relative to the suite file that declares it (as a user reads it),
    unless it exists relative to where the run started."""
    if isinstance(built.onnx, (str, Path)) and not Path(built.onnx).is_absolute() and not Path(built.onnx).exists():
        beside = Path(suite_path).parent / built.onnx
        if beside.exists():
            built.onnx = str(beside)


def case_row(task: Task) -> dict[str, Any]:
    return {
        "run": task.run_id,
        "case": task.ref.id,
        "suite": task.ref.suite,
        "name": task.ref.name,
        "path": task.ref.path,
        "status": "ok",
        "stage": None,
        "message": None,
        "traceback": None,
    }


def _describe(row: dict[str, Any], built: Case, task: Task) -> None:
    row["tags"] = sorted(set(row.get("tags") or []) | set(built.tags or ()))
    row["description"] = built.description
    row["exporter"] = (
        "recorded"
        if built.onnx_test
        else USER_FILE
        if built.onnx is not None
        else (task.exporter or built.exporter or "dynamo")
    )
    row["reference"] = "recorded" if built.onnx_test else task.reference
    if built.module is None and built.onnx is not None:  # a bare ONNX file: runtime against runtime
        from .bare_onnx import reference_for

        row["reference"] = reference_for(task.backends)
    row["expect"] = json.dumps(built.expect) if built.expect is not None else None
    row["tolerances"] = json.dumps(
        {
            "rtol": built.rtol,
            "atol": built.atol,
            "per_output": dict(built.tolerances or {}),
            "output_masks": dict(built.output_masks or {}),
        }
    )
    row["rewrites"] = [
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
    row["warnings"] = warnings


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


def _run(task: Task, built: Case, row: dict[str, Any], tensors: list[dict[str, Any]]) -> None:
    import torch

    from ..backends.candidates import parse
    from ..suite.model_io import FlatModule, flatten_outputs, signature_of, to_feeds
    from .state_guard import ModelGuard

    guard = ModelGuard.record(built.module)
    row["stage"] = "build"
    signature, example = signature_of(built.module, built.args, dict(built.kwargs or {}), built.bake_kwargs)
    row["inputs"] = list(signature.names)
    unknown_axes = sorted(set(built.dynamic_axes or {}) - set(signature.names))
    if unknown_axes:
        raise CaseDefinitionError(
            f"dynamic_axes names input(s) {', '.join(unknown_axes)}, but the case's tensor inputs are named "
            f"{', '.join(signature.names) or '(none)'} (from the forward signature and the kwargs' keys)"
        )
    base_feeds = to_feeds(signature.names, example)  # copies, taken before any stage can touch the tensors
    frozen = {name: example[signature.names.index(name)] for name in signature.baked}
    flat = FlatModule(built.module, signature)
    row["stage"] = "reference"
    enter_stage("reference")
    with torch.inference_mode():
        output_names, output_values = flatten_outputs(flat.call_inner(*_clones(example)))
    guard.check("the reference's first forward")
    row["outputs"] = output_names = _named_outputs(built, output_names)
    file = None
    if built.onnx is not None:  # the user's own file runs where difftest's export would: bound to the model first
        file = _bind_file(built, row, base_feeds, output_names, output_values)
        row["outputs"] = output_names = file.binding.outputs
    if built.output_masks:
        from ..judge.masks import declaration_problem

        problem = declaration_problem(
            dict(built.output_masks), base_feeds, {n: tuple(v.shape) for n, v in zip(output_names, output_values)}
        )
        if problem:
            raise CaseDefinitionError(problem)
    row["stage"] = None

    candidates = [parse(spec) for spec in task.backends]
    exports = CaseExports(task, built, signature, example, frozen, output_names, row, guard, file)
    for key in _export_order(candidates, row["exporter"]):
        exports.get(key)
    row["export_warnings"] = exports.warnings()
    probes = _make_probes(task, built, signature.names, base_feeds, traced_warnings(row["export_warnings"]))
    row["probes"] = list(probes)
    for probe, feeds in probes.items():
        for index, (name, array) in enumerate(feeds.items()):
            tensors.append(
                tensor_row(task, INPUTS, probe, output=name, index=index, array=array, max_bytes=task.max_tensor_bytes)
            )
    subject = Subject(module=built.module, input_names=list(signature.names), output_names=output_names, call=flat)
    from .full_compare import FullComparisons

    full = FullComparisons(
        task.reference,
        task.max_tensor_bytes,
        Path(task.artifacts_dir).parent / "scratch" / slug(task.ref.id),
        json.loads(row.get("tolerances") or "{}"),
    )
    try:
        _run_candidates(task, built, row, tensors, candidates, exports, probes, subject, guard, full)
    finally:
        full.close()


def _run_candidates(
    task: Task,
    built: Case,
    row: dict[str, Any],
    tensors: list[dict[str, Any]],
    candidates: list[Any],
    exports: "CaseExports",
    probes: dict[str, dict[str, np.ndarray]],
    subject: Subject,
    guard: Any,
    full: Any,
) -> None:
    for candidate in candidates:
        backend = REGISTRY[candidate.backend](threads=task.threads, options=dict(candidate.settings))
        run_subject = subject
        if backend.needs_onnx:
            exported = exports.get(candidate.export_key(row["exporter"]))
            if not exported.ok:
                tensors.append(
                    tensor_row(task, candidate.name, "*", status="error", stage=exported.stage, message=exported.error)
                )
                continue
            run_subject = subject.with_graph(exported)
        reruns = 0 if candidate.name in (task.reference_variants or ()) else task.reruns
        run_backend(
            task,
            backend,
            run_subject,
            probes,
            tensors,
            reruns,
            name=candidate.name,
            after_run=guard.check if backend.runs_the_model else None,
            full=full,
        )
        if candidate.name == task.reference and not backend.needs_onnx:
            # Once more with another seed: an output that changes comes from a model that samples, and is judged
            # by what sampling keeps (see judge.randomness), never by eager's one draw.
            run_backend(
                task,
                backend,
                run_subject,
                probes,
                tensors,
                0,
                name=RESEEDED,
                after_run=guard.check if backend.runs_the_model else None,
                seed_value=RESEED,
            )
    from ..backends.candidates import export_name

    differing = _differing_outputs(task, row, tensors, candidates)
    for key, exported in exports.done.items():
        name = export_name(key)
        if exported.ok and differing.get(name):
            wanted = {p: feeds for p, feeds in probes.items() if p in differing[name]}
            record_graph_evidence(task, exported.onnx_bytes, subject.output_names, wanted, tensors, name)
    differing_probes = {p for found in differing.values() for p in found}
    if differing_probes:  # are differing indices ties? Eager's own values say (see ``eager_ranked``)
        from .eager_ranked import record_eager_ranked

        record_eager_ranked(
            task, subject, {p: feeds for p, feeds in probes.items() if p in differing_probes}, tensors, guard.check
        )
    integer_probes = _integer_differences(task, tensors)
    for key, exported in exports.done.items():  # is an undefined float-to-int conversion behind the difference?
        if exported.ok and exported.float_to_int_casts and integer_probes:
            wanted = {p: feeds for p, feeds in probes.items() if p in integer_probes}
            record_graph_evidence(
                task,
                exported.onnx_bytes,
                subject.output_names,
                wanted,
                tensors,
                export_name(key),
                kinds=("cast_inputs",),
            )
    failing: dict[str, set[str]] = {}
    if task.control_budget > 0 or task.localize_budget > 0:
        from .controls import failing_candidates

        failing = failing_candidates(task, row, tensors)  # judged once, for the controls and the localization
    if task.control_budget > 0:
        from .controls import run_controls

        def graph_for(candidate: Any) -> Subject | None:
            if not REGISTRY[candidate.backend].needs_onnx:
                return subject
            exported = exports.get(candidate.export_key(row["exporter"]))
            return subject.with_graph(exported) if exported.ok else None

        without_rewrite = None
        if built.onnx_transform is not None:

            def without_rewrite(candidate: Any) -> ExportResult:
                return exports.raw(candidate.export_key(row["exporter"]))

        run_controls(
            task,
            row,
            tensors,
            probes,
            graph_for,
            built.module,
            without_rewrite,
            failing,
            own_exporter(task, built) if built.onnx is not None else None,
        )
        from .export_control import try_other_exporter

        try_other_exporter(row, candidates, exports)  # an export that failed: does the other exporter take it?
    row["state_changes"] = guard.summary()
    if task.localize_budget > 0:
        from .auto_localize import localize_failures

        localize_failures(task, built, candidates, failing, row, exports)


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
    built: Case, row: dict[str, Any], feeds: dict[str, np.ndarray], output_names: list[str], output_values: list[Any]
) -> BoundFile:
    """Load the case's ONNX file and line it up with the model, before any candidate runs; a file that does not
    line up is the case's definition error, with both sides listed."""
    from ..export import onnx_file
    from ..suite.model_io import to_numpy

    row["stage"] = "load"
    enter_stage("load")
    try:
        model = onnx_file.load(built.onnx)
        binding = onnx_file.bind(model, list(feeds), feeds, output_names, [to_numpy(v) for v in output_values])
    except onnx_file.OnnxFileError as exc:
        raise CaseDefinitionError(str(exc)) from None
    row["warnings"] = (
        list(row.get("warnings") or []) + binding.notes + onnx_file.dynamic_axes_problems(binding, built.dynamic_axes)
    )
    # Probes vary what the file declares dynamic, under the file's names; difftest's own export (the control)
    # is made with the same dynamic axes.
    built.dynamic_axes = binding.dynamic_axes or None
    return BoundFile(onnx_file.bound_model(model, binding), binding, onnx_file.digest(built.onnx))


def _differing_outputs(
    task: Task, row: dict[str, Any], tensors: list[dict[str, Any]], candidates: list[Any]
) -> dict[str, set[str]]:
    """Export name (or, for a candidate that runs the model, its name) -> the probes on which a candidate differs
    from the reference beyond the case's tolerance. Evidence (ranked values, summation magnitudes, eager's index
    ops) is only worth gathering there."""
    from ..backends.candidates import export_name
    from ..judge.classify import tolerance_for
    from ..judge.compare import bit_identical, within
    from ..judge.verdicts import output_tolerance
    from ..record.tables import decode

    tolerances = json.loads(row.get("tolerances") or "{}")
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
            name = export_name(candidate.export_key(row["exporter"]))
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
        row: dict[str, Any],
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
