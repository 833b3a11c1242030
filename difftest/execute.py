"""Run one case through every backend, inside a worker process.

Builds the case from its recipe, runs the reference, exports once, runs each
candidate on every probe, and returns plain rows for the ``cases`` and
``tensors`` tables. A failing model is rows with a status and a message; only a
bug in difftest raises.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import REGISTRY, BackendUnavailable, Subject
from .cases import Case, CaseDefinitionError, CaseRef, build
from .execute_names import INPUTS, RANKED, slug
from .export import ExportResult, describe_exception, export
from .tables import tensor_row

SEED = 0

# Set by the worker process: called with the stage a case enters, so a crash can name it.
stage_hook: Any = None


def _stage(name: str) -> None:
    if stage_hook is not None:
        stage_hook(name)


@dataclass
class Task:
    """What the parent sends a worker: picklable, no models."""

    ref: CaseRef
    run_id: str
    backends: list[str]  # available backends to run, reference first
    reference: str
    exporter: str | None  # run-wide override, else the case's, else dynamo
    artifacts_dir: str
    reference_variants: list[str] = field(default_factory=list)  # e.g. the float64 oracle: no reruns
    probes: list[str] = field(default_factory=lambda: ["base"])
    reruns: int = 1
    threads: int | None = None
    max_tensor_bytes: int = 256 * 2**20
    cache_dir: str | None = None  # the export cache; None runs every export
    localize_budget: float = 0.0  # seconds per case to localize failing candidates (0: off)


def run_task(task: Task) -> dict[str, Any]:
    """Execute the task; returns {"case": row, "tensors": [rows]}."""
    started = time.perf_counter()
    row = case_row(task)
    tensors: list[dict[str, Any]] = []
    try:
        from .discover import find_definition

        _stage("build")
        _seed()
        definition = find_definition(task.ref)
        row["tags"] = list(definition.tags)
        row["description"] = definition.doc
        if definition.options.get("expect") is not None:
            row["expect"] = json.dumps(definition.options["expect"])
        built = build(definition)
    except Exception as exc:
        row.update(status="error", stage="build", message=describe_exception(exc), traceback=traceback.format_exc())
        row["seconds"] = time.perf_counter() - started
        return {"case": row, "tensors": tensors}
    _describe(row, built, task)
    try:
        if built.onnx_test is not None:
            from .recorded_case import run_recorded

            run_recorded(task, built, row, tensors)
        else:
            _run(task, built, row, tensors)
    except Exception as exc:
        row.update(status="error", stage=row.get("stage") or "harness", message=describe_exception(exc),
                   traceback=traceback.format_exc())
    row["seconds"] = time.perf_counter() - started
    return {"case": row, "tensors": tensors}


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
    row["exporter"] = "recorded" if built.onnx_test else (task.exporter or built.exporter or "dynamo")
    row["reference"] = "recorded" if built.onnx_test else task.reference
    row["expect"] = json.dumps(built.expect) if built.expect is not None else None
    row["tolerances"] = json.dumps(
        {"rtol": built.rtol, "atol": built.atol, "per_output": dict(built.tolerances or {})}
    )
    warnings = []
    if getattr(built.module, "training", False):
        warnings.append("the model is in training mode: call .eval() in the factory (dropout and batch norm differ)")
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

    from .model_io import FlatModule, flatten_outputs, signature_of, to_feeds

    row["stage"] = "build"
    signature, example = signature_of(built.module, built.args, dict(built.kwargs or {}), built.bake_kwargs)
    row["inputs"] = list(signature.names)
    unknown_axes = sorted(set(built.dynamic_axes or {}) - set(signature.names))
    if unknown_axes:
        raise CaseDefinitionError(
            f"dynamic_axes names input(s) {', '.join(unknown_axes)}, but the case's tensor inputs are named "
            f"{', '.join(signature.names) or '(none)'} (from the forward signature and the kwargs' keys)")
    frozen = {name: example[signature.names.index(name)] for name in signature.baked}
    flat = FlatModule(built.module, signature)
    row["stage"] = "reference"
    _stage("reference")
    with torch.inference_mode():
        output_names, _ = flatten_outputs(built.module(*built.args, **dict(built.kwargs or {})))
    row["outputs"] = output_names
    row["stage"] = None
    from .probes import DEFAULT_PROBES, make_probes

    selected = [p for p in task.probes if p in (built.probes or DEFAULT_PROBES)]
    custom = {name: to_feeds(list(sample), list(sample.values())) for name, sample in (built.samples or {}).items()}
    probes = make_probes(to_feeds(signature.names, example), selected, built.dynamic_axes, custom)
    row["probes"] = list(probes)
    for probe, feeds in probes.items():
        for index, (name, array) in enumerate(feeds.items()):
            tensors.append(tensor_row(task, INPUTS, probe, output=name, index=index, array=array,
                                      max_bytes=task.max_tensor_bytes))
    subject = Subject(module=built.module, input_names=list(signature.names), output_names=output_names, call=flat)

    from .candidates import export_name, parse
    from .transforms import TRANSFORMS

    candidates = [parse(spec) for spec in task.backends]
    exports: dict[tuple[str, str | None], ExportResult] = {}
    export_keys: dict[tuple[str, str | None], str] = {}  # cache keys, which also key cached localizations

    def export_for(key: tuple[str, str | None]) -> ExportResult:
        """Each distinct (exporter, transform) is exported once per case and shared by its candidates."""
        if key not in exports:
            exporter, named = key
            _stage(f"export ({export_name(key)})")
            _seed()
            transform = _compose(built.onnx_transform, TRANSFORMS[named] if named else None)
            cache, cache_key = None, None
            if task.cache_dir:
                from .cache import ExportCache, export_key

                cache = ExportCache(task.cache_dir)
                cache_key = export_key(task.ref.id, task.ref.path, built.module, list(zip(signature.names, example)), {
                    "exporter": exporter, "transform": named, "transform_fn": transform, "opset": built.opset,
                    "dynamic_axes": built.dynamic_axes, "outputs": output_names, "frozen": sorted(frozen),
                    "arg_constants": [repr(c) for c, slot in zip(signature.arg_constants, signature.arg_slots)
                                      if slot is None], "kw_constants": repr(signature.kw_constants)})
                export_keys[key] = cache_key
                exports[key] = cache.get(cache_key)
                if exports[key] is not None:
                    exports[key].cached = True
            if exports.get(key) is None:
                exports[key] = export(
                    FlatModule(built.module, signature, frozen),
                    tuple(t for n, t in zip(signature.names, example) if n not in frozen),
                    output_names, exporter=exporter, opset=built.opset, dynamic_axes=built.dynamic_axes,
                    transform=transform,
                )
                if cache is not None:
                    cache.put(cache_key, exports[key])
            _record_export(row, key, exports[key], signature.names, task)
        return exports[key]

    default_key = (row["exporter"], None)
    if any(REGISTRY[c.backend].needs_onnx and c.export_key(row["exporter"]) == default_key for c in candidates):
        export_for(default_key)  # the case's own export first: its fields describe the case
    for candidate in candidates:
        backend = REGISTRY[candidate.backend](threads=task.threads, options=dict(candidate.settings))
        run_subject = subject
        if backend.needs_onnx:
            exported = export_for(candidate.export_key(row["exporter"]))
            if not exported.ok:
                tensors.append(tensor_row(task, candidate.name, "*", status="error", stage=exported.stage,
                                          message=exported.error))
                continue
            run_subject = Subject(built.module, list(signature.names), output_names, flat,
                                  onnx_bytes=exported.onnx_bytes, graph_inputs=exported.graph_inputs)
        reruns = 0 if candidate.name in (task.reference_variants or ()) else task.reruns
        _run_backend(task, backend, run_subject, probes, tensors, reruns, name=candidate.name)
    for key, exported in exports.items():
        if exported.ok:
            _record_ranked_values(task, exported.onnx_bytes, output_names, probes, tensors,
                                  f"{RANKED}:{export_name(key)}")
    if task.localize_budget > 0:
        from .auto_localize import localize_failures

        localize_failures(task, built, candidates, tensors, row,
                          {c.name: export_keys.get(c.export_key(row["exporter"])) for c in candidates})


def _compose(first: Any, second: Any) -> Any:
    if first is None or second is None:
        return first or second

    def both(model: Any) -> Any:
        return second(first(model))

    return both


def _record_ranked_values(task: Task, onnx_bytes: bytes, output_names: list[str],
                          probes: dict[str, dict[str, np.ndarray]], tensors: list[dict[str, Any]],
                          pseudo_backend: str) -> None:
    """For index outputs, record the values their ArgMax/TopK ranked (see ``ranked``)."""
    from . import ranked

    try:
        augmented = ranked.augment(onnx_bytes, output_names)
    except Exception as exc:
        tensors.append(tensor_row(task, pseudo_backend, "*", status="error", stage="ranked",
                                  message=describe_exception(exc)))
        return
    if augmented is None:
        return
    model, found = augmented
    for probe, feeds in probes.items():
        try:
            values = ranked.evaluate(model, found, feeds)
        except Exception as exc:
            tensors.append(tensor_row(task, pseudo_backend, probe, status="error", stage="ranked",
                                      message=describe_exception(exc)))
            continue
        for output, array in values.items():
            info = {k: found[output][k] for k in ("op", "axis", "keepdims")}
            tensors.append(tensor_row(task, pseudo_backend, probe, output=output, array=array,
                                      message=json.dumps(info), max_bytes=task.max_tensor_bytes))


def _run_backend(task: Task, backend: Any, subject: Subject, probes: dict[str, dict[str, np.ndarray]],
                 tensors: list[dict[str, Any]], reruns: int = 0, name: str | None = None) -> None:
    if backend.device != "cpu":
        with _device_lock(task, backend.device):  # one case at a time per GPU: timings and memory stay sane
            _run_backend_unlocked(task, backend, subject, probes, tensors, reruns, name)
    else:
        _run_backend_unlocked(task, backend, subject, probes, tensors, reruns, name)


class _device_lock:
    """An exclusive lock on a file per device, held across workers of one run."""

    def __init__(self, task: Task, device: str):
        self.path = Path(task.artifacts_dir).parent / "locks" / f"{device}.lock"

    def __enter__(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _run_backend_unlocked(task: Task, backend: Any, subject: Subject, probes: dict[str, dict[str, np.ndarray]],
                          tensors: list[dict[str, Any]], reruns: int = 0, name: str | None = None) -> None:
    name = name or backend.name
    started = time.perf_counter()
    try:
        _stage(f"session build ({name})")
        _seed()
        session = backend.prepare(subject)
        providers = list(backend.providers(session))
    except BackendUnavailable as exc:
        tensors.append(tensor_row(task, name, "*", status="skipped", stage="session", message=str(exc)))
        return
    except Exception as exc:
        tensors.append(tensor_row(task, name, "*", status="error", stage="session", message=describe_exception(exc),
                                  seconds=time.perf_counter() - started))
        return
    prepare_seconds = time.perf_counter() - started
    for probe, feeds in probes.items():
        for rerun in range(1 + reruns):
            if not _run_once(task, backend, name, session, subject, probe, feeds, rerun, prepare_seconds,
                             providers, tensors):
                break


def _run_once(task: Task, backend: Any, name: str, session: Any, subject: Subject, probe: str,
              feeds: dict[str, np.ndarray], rerun: int, prepare_seconds: float, providers: list[str],
              tensors: list[dict[str, Any]]) -> bool:
    began = time.perf_counter()
    try:
        _stage(f"run ({name}, probe {probe})")
        _seed()
        outputs = backend.run(session, feeds)
    except Exception as exc:
        tensors.append(tensor_row(task, name, probe, status="error", stage="run", message=describe_exception(exc),
                                  seconds=time.perf_counter() - began, providers=providers, rerun=rerun))
        return False
    seconds = time.perf_counter() - began
    if len(outputs) != len(subject.output_names):
        message = (f"{len(outputs)} outputs, reference has {len(subject.output_names)} "
                   f"({', '.join(subject.output_names)})")
        tensors.append(tensor_row(task, name, probe, status="error", stage="outputs", message=message,
                                  seconds=seconds, providers=providers, rerun=rerun))
        return False
    for index, (output, array) in enumerate(zip(subject.output_names, outputs)):
        tensors.append(tensor_row(task, name, probe, output=output, index=index, array=array, seconds=seconds,
                                  prepare_seconds=prepare_seconds, providers=providers, rerun=rerun,
                                  max_bytes=task.max_tensor_bytes))
    return True


def _record_export(row: dict[str, Any], key: tuple[str, str | None], exported: ExportResult,
                   input_names: list[str], task: Task) -> None:
    """Every export goes into ``exports`` (JSON by export name); the case's own one also into the columns."""
    from .candidates import export_name

    name = export_name(key)
    dropped = [n for n in input_names if exported.ok and n not in exported.graph_inputs]
    info: dict[str, Any] = {
        "exporter": key[0], "transform": key[1], "status": "ok" if exported.ok else "error",
        "stage": None if exported.ok else exported.stage, "error": exported.error, "seconds": exported.seconds,
        "digest": exported.digest, "opset": exported.opset, "node_count": exported.node_count,
        "graph_inputs": exported.graph_inputs, "graph_outputs": exported.graph_outputs, "dropped_inputs": dropped,
        "onnx_path": None, "cached": exported.cached,
    }
    if exported.ok:
        folder = Path(task.artifacts_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{slug(task.ref.id)}.{name}.onnx"
        path.write_bytes(exported.onnx_bytes)
        info["onnx_path"] = str(path)
    all_exports = json.loads(row.get("exports") or "{}")
    all_exports[name] = info
    row["exports"] = json.dumps(all_exports)
    if "export_status" in row:
        return
    row.update(
        export_seconds=0.0 if exported.cached else exported.seconds, export_cached=exported.cached, export_status=info["status"], export_stage=info["stage"],
        export_error=exported.error, onnx_digest=exported.digest, opset=exported.opset,
        node_count=exported.node_count, graph_inputs=exported.graph_inputs, graph_outputs=exported.graph_outputs,
        dropped_inputs=dropped, onnx_path=info["onnx_path"],
    )


def _seed() -> None:
    import random

    import torch

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
