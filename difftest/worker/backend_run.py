"""Run one backend on every probe of a case and record what it returned; record an export and the evidence its graph
gives about its outputs (ranked values, summation magnitudes). Shared by the case runner, the controls and
recorded ONNX test cases."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..backends import BackendUnavailable, Subject
from ..export.exporter import ExportResult, describe_exception
from ..record.names import RANKED, slug
from ..record.tables import tensor_row
from .task import SEED, Task, enter_stage, seed, user_traceback
from .case_run import CaseRow


def run_backend(
    task: Task,
    backend: Any,
    subject: Subject,
    probes: dict[str, dict[str, np.ndarray]],
    tensors: list[dict[str, Any]],
    reruns: int = 0,
    name: str | None = None,
    after_run: Callable[[str], Any] | None = None,
    full: Any = None,
    seed_value: int = SEED,
) -> None:
    """Prepare ``backend`` once and run it on every probe (and its reruns), appending tensors rows.
    ``after_run`` is called with a stage description after every run (the model guard's check); ``full``
    compares outputs too large to store whole (see ``full_compare``); ``seed_value`` seeds every run (the
    reference's reseeded run uses another)."""
    # One case at a time per GPU: timings and memory stay sane.
    with _device_lock(task, backend.device) if backend.device != "cpu" else contextlib.nullcontext():
        _run_backend_unlocked(task, backend, subject, probes, tensors, reruns, name, after_run, full, seed_value)


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


def _run_backend_unlocked(
    task: Task,
    backend: Any,
    subject: Subject,
    probes: dict[str, dict[str, np.ndarray]],
    tensors: list[dict[str, Any]],
    reruns: int = 0,
    name: str | None = None,
    after_run: Callable[[str], Any] | None = None,
    full: Any = None,
    seed_value: int = SEED,
) -> None:
    name = name or backend.name
    started = time.perf_counter()
    try:
        enter_stage(f"session build ({name})")
        seed()
        session = backend.prepare(subject)
        providers = list(backend.providers(session))
    except BackendUnavailable as exc:
        tensors.append(tensor_row(task, name, "*", status="skipped", stage="session", message=str(exc)))
        return
    except Exception as exc:
        tensors.append(
            tensor_row(
                task,
                name,
                "*",
                status="error",
                stage="session",
                message=describe_exception(exc),
                seconds=time.perf_counter() - started,
                traceback=user_traceback(exc),
            )
        )
        return
    prepare_seconds = time.perf_counter() - started
    try:
        for probe, feeds in probes.items():
            for rerun in range(1 + reruns):
                ok = _run_once(
                    task,
                    backend,
                    name,
                    session,
                    subject,
                    probe,
                    feeds,
                    rerun,
                    prepare_seconds,
                    providers,
                    tensors,
                    full,
                    seed_value,
                )
                if after_run is not None:
                    after_run(f"the {name} run")
                if not ok:
                    break
    finally:
        teardown(backend, session)


def teardown(backend: Any, session: Any) -> None:
    """The backend's own teardown (compiled graphs, caches): what it raises is no result of the case."""
    try:
        backend.teardown(session)
    except Exception:
        pass


def _run_once(
    task: Task,
    backend: Any,
    name: str,
    session: Any,
    subject: Subject,
    probe: str,
    feeds: dict[str, np.ndarray],
    rerun: int,
    prepare_seconds: float,
    providers: list[str],
    tensors: list[dict[str, Any]],
    full: Any = None,
    seed_value: int = SEED,
) -> bool:
    from ..backends.torch_eager import ModelFault

    began = time.perf_counter()
    try:
        enter_stage(f"run ({name}, probe {probe})")
        seed(seed_value)
        outputs = backend.run(session, feeds)
    except Exception as exc:
        stage = "model" if isinstance(exc, ModelFault) else "run"  # the model's doing, not the backend's
        message = str(exc) if isinstance(exc, ModelFault) else describe_exception(exc)
        tensors.append(
            tensor_row(
                task,
                name,
                probe,
                status="error",
                stage=stage,
                message=message,
                seconds=time.perf_counter() - began,
                providers=providers,
                rerun=rerun,
                traceback=user_traceback(exc),
            )
        )
        return False
    seconds = time.perf_counter() - began
    if len(outputs) != len(subject.output_names):
        message = (
            f"{len(outputs)} outputs, reference has {len(subject.output_names)} ({', '.join(subject.output_names)})"
        )
        tensors.append(
            tensor_row(
                task,
                name,
                probe,
                status="error",
                stage="outputs",
                message=message,
                seconds=seconds,
                providers=providers,
                rerun=rerun,
            )
        )
        return False
    for index, (output, array) in enumerate(zip(subject.output_names, outputs)):
        compared = full.compare(name, probe, output, rerun, array) if full is not None else None
        tensors.append(
            tensor_row(
                task,
                name,
                probe,
                output=output,
                index=index,
                array=array,
                seconds=seconds,
                prepare_seconds=prepare_seconds,
                providers=providers,
                rerun=rerun,
                max_bytes=task.max_tensor_bytes,
                full=compared,
            )
        )
    return True


def record_export(
    row: CaseRow, key: tuple[str, str | None], exported: ExportResult, input_names: list[str], task: Task
) -> None:
    """Every export goes into ``exports`` (JSON by export name); the case's own one also into the columns."""
    from ..backends.candidates import export_name

    name = export_name(key)
    dropped = [n for n in input_names if exported.ok and n not in exported.graph_inputs]
    info: dict[str, Any] = {
        "exporter": key[0],
        "transform": key[1],
        "status": "ok" if exported.ok else "error",
        "stage": None if exported.ok else exported.stage,
        "error": exported.error,
        "seconds": exported.seconds,
        "digest": exported.digest,
        "opset": exported.opset,
        "node_count": exported.node_count,
        "graph_inputs": exported.graph_inputs,
        "graph_outputs": exported.graph_outputs,
        "dropped_inputs": dropped,
        "onnx_path": None,
        "cached": exported.cached,
        "warnings": exported.warnings,
        "float_to_int_casts": exported.float_to_int_casts,
        "invalidated_by": exported.invalidated_by,
        "random_ops": getattr(exported, "random_ops", []),
        "unordered_outputs": exported.unordered_outputs,
        "cache": exported.cache_note,
    }
    if exported.ok:
        folder = Path(task.artifacts_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{slug(task.ref.id)}.{name}.onnx"
        path.write_bytes(exported.onnx_bytes)
        info["onnx_path"] = f"{folder.name}/{path.name}"  # relative to the run folder, which can move
    all_exports = row.exports or {}
    all_exports[name] = info
    row.exports = all_exports
    if row.export_status is not None:
        return
    row.update(
        export_seconds=0.0 if exported.cached else exported.seconds,
        export_cached=exported.cached,
        export_cache=exported.cache_note,
        export_status=info["status"],
        export_stage=info["stage"],
        export_error=exported.error,
        onnx_digest=exported.digest,
        opset=exported.opset,
        node_count=exported.node_count,
        graph_inputs=exported.graph_inputs,
        graph_outputs=exported.graph_outputs,
        dropped_inputs=dropped,
        onnx_path=info["onnx_path"],
    )


def _evidence_session(model: bytes) -> Any:
    """An ORT CPU session for a graph augmented with evidence outputs (quiet: the graph is ours, not the case's)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def record_graph_evidence(
    task: Task,
    onnx_bytes: bytes,
    output_names: list[str],
    probes: dict[str, dict[str, np.ndarray]],
    tensors: list[dict[str, Any]],
    export: str,
    kinds: tuple[str, ...] = ("ranked", "accumulation"),
) -> None:
    """What the graph says about its outputs, evaluated on every probe: the values an index output ranked
    (``ranked``), the magnitudes behind an accumulated output (``accumulation``), the values its float-to-integer
    Casts convert (``cast_inputs``, asked for separately: see ``judge.casts``). Each is the graph with extra
    outputs, run on ORT CPU; its rows go under the pseudo-backend ``<kind>:<export>``."""
    from ..judge import accumulation, casts, ranked

    modules = {RANKED: ranked, accumulation.PSEUDO: accumulation, casts.PSEUDO: casts}
    for kind, module in ((k, modules[k]) for k in kinds):
        pseudo_backend = f"{kind}:{export}"
        try:
            augmented = module.augment(onnx_bytes, output_names)
        except Exception as exc:
            tensors.append(
                tensor_row(task, pseudo_backend, "*", status="error", stage=kind, message=describe_exception(exc))
            )
            continue
        if augmented is None:
            continue
        model, found = augmented
        try:
            session = _evidence_session(model)  # once per export: every probe runs the same augmented graph
        except Exception as exc:
            tensors.append(
                tensor_row(task, pseudo_backend, "*", status="error", stage=kind, message=describe_exception(exc))
            )
            continue
        for probe, feeds in probes.items():
            try:
                values = module.evaluate(session, found, feeds)
            except Exception as exc:
                tensors.append(
                    tensor_row(task, pseudo_backend, probe, status="error", stage=kind, message=describe_exception(exc))
                )
                continue
            for output, (array, info) in values.items():
                tensors.append(
                    tensor_row(
                        task,
                        pseudo_backend,
                        probe,
                        output=output,
                        array=array,
                        about=info,
                        max_bytes=task.max_tensor_bytes,
                    )
                )
