"""Run an ONNX test folder: the recorded outputs are the reference, the ONNX backends the candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backends import REGISTRY, Subject
from ..export.exporter import ExportResult
from ..record.names import INPUTS
from ..record.tables import tensor_row
from .backend_run import record_export, record_graph_evidence, run_backend
from .task import enter_stage
from .case_run import CaseRun

REFERENCE = "recorded"


def run_recorded(run: CaseRun) -> None:
    """An ONNX test folder: its recorded outputs are the reference, each ONNX backend a candidate."""
    from ..backends.candidates import export_name, parse

    task, built, row, tensors = run.task, run.built, run.row, run.tensors
    from ..export.transforms import steps
    from ..suite import onnx_tests

    row.stage = "load"
    enter_stage("load")
    test = onnx_tests.load(Path(built.onnx_test))
    row.stage = None
    row.inputs, row.outputs = test.input_names, test.output_names
    if built.rtol is None and built.atol is None and not built.tolerances:
        row.tolerances = {"rtol": onnx_tests.RTOL, "atol": onnx_tests.ATOL, "per_output": {}}
    probes = {("base" if i == 0 else f"set_{i}"): feeds for i, (feeds, _) in enumerate(test.data_sets)}
    row.probes = list(probes)
    for (probe, feeds), (_, expected) in zip(probes.items(), test.data_sets):
        for index, (name, array) in enumerate(feeds.items()):
            tensors.append(
                tensor_row(task, INPUTS, probe, output=name, index=index, array=array, max_bytes=task.max_tensor_bytes)
            )
        for index, (name, array) in enumerate(zip(test.output_names, expected)):
            tensors.append(
                tensor_row(
                    task, REFERENCE, probe, output=name, index=index, array=array, max_bytes=task.max_tensor_bytes
                )
            )
    exports: dict[tuple[str, str | None], ExportResult] = {}

    def model_for(key: tuple[str, str | None]) -> ExportResult:
        if key not in exports:
            exports[key] = _transformed(test.model, steps(built.onnx_transform, key[1]))
            record_export(row, key, exports[key], test.input_names, task)
        return exports[key]

    recorded = Subject(None, list(test.input_names), list(test.output_names), None)  # no PyTorch model: graphs only
    for spec in task.backends:
        candidate = parse(spec)
        backend = REGISTRY[candidate.backend](threads=task.threads, options=dict(candidate.settings))
        if not backend.needs_onnx:
            tensors.append(
                tensor_row(
                    task,
                    candidate.name,
                    "*",
                    status="skipped",
                    stage="session",
                    message=(
                        "not applicable: this case is an ONNX test folder: there is no PyTorch model to run; its "
                        "reference is the recorded outputs"
                    ),
                )
            )
            continue
        model = model_for(("recorded", candidate.get("transform")))
        if not model.ok:
            tensors.append(
                tensor_row(task, candidate.name, "*", status="error", stage=model.stage, message=model.error)
            )
            continue
        run_backend(task, backend, recorded.with_graph(model), probes, tensors, task.reruns, name=candidate.name)
    for key, model in exports.items():
        if model.ok:
            record_graph_evidence(task, model.onnx_bytes, list(test.output_names), probes, tensors, export_name(key))
    if task.control_budget > 0:
        from .controls import run_controls

        def graph_for(candidate: Any) -> Subject | None:
            model = model_for(("recorded", candidate.get("transform")))
            return recorded.with_graph(model) if model.ok else None

        run_controls(task, row, tensors, probes, graph_for)


def _transformed(model_bytes: bytes, transform: list[tuple[str, Any]]) -> ExportResult:
    """The folder's model, after the case's and the candidate's transforms, described like an export."""
    import time

    import onnx

    from ..export.exporter import described

    started = time.perf_counter()
    return described("recorded", onnx.load_from_string(model_bytes), transform, started)
