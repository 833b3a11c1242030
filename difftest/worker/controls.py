"""Automatic controls: extra runs for a candidate that fails, so blame rests on evidence, not on a guess.

Runs inside the worker, after every candidate has run. The case is judged on the spot (the same judge the
parent uses later); for each ONNX candidate with a value failure (mismatch, layout, nonfinite, shape):

- ``onnx-ref`` on the same graph: the ONNX specification's reference implementation (numpy), a third opinion
  that separates the graph from the runtime;
- when the case runs the user's own ONNX file: difftest's own export of the same model;
- when the case rewrites its export (``onnx_transform``): the same runtime on the export without the rewrite;
- the controls the candidate's backend declares (``Backend.controls``): ORT with its graph optimizations off
  (``opt=disable``), a CUDA candidate with TF32 off (``tf32=0``), torch-cuda running attention modules with
  nn.MultiheadAttention's inference fast path off (``fastpath=0``, with and without TF32), OpenVINO at float32
  (``precision=f32``: its CPU plugin infers in bf16 by default where the CPU has it), torch.compile with the
  ``aot_eager`` backend (Dynamo's capture without Inductor's code generation);
- for a failing dynamo-exported ONNX candidate: ``torch-export``, the program ``torch.export`` captured run as
  a module, which tells the capture from the ONNX translation.

Controls run only on the failing probes, within ``Task.control_budget`` seconds per case; what could not run
is recorded with the reason. The case row's ``controls`` column holds, per control, whether it ran, for which
candidate and why; control backends' outputs are ordinary tensors rows, judged like candidates (blame reads
them) but never counted as results of their own.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..backends.candidates import USER_FILE, with_settings
from .case_run import CaseRow


def failing_candidates(task: Any, row: CaseRow, tensors: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Candidate -> probes on which it has a value failure, by the same judge the parent runs."""
    from ..judge.classify import WRONG_VALUES
    from ..judge.verdicts import RunContext, judge_case

    variants = set(task.reference_variants or ())
    context = RunContext(
        run=task.run_id,
        reference=task.reference,
        candidates=[b for b in task.backends if b != task.reference and b not in variants],
        skipped={},
        oracle=next(iter(variants), None),
    )
    failing: dict[str, set[str]] = {}
    for comparison in judge_case({**row.as_row(), "status": "ok", "controls": None}, tensors, context):
        if comparison["label"] in WRONG_VALUES and comparison["probe"] != "*":
            failing.setdefault(comparison["candidate"], set()).add(comparison["probe"])
    return failing


def run_controls(
    task: Any,
    row: CaseRow,
    tensors: list[dict[str, Any]],
    probes: dict[str, dict[str, Any]],
    graph_for: Callable[[Any], Any],
    module: Any = None,
    without_rewrite: Callable[[Any], Any] | None = None,
    failing: dict[str, set[str]] | None = None,
    own_exporter: str | None = None,
) -> None:
    """Run the controls for every candidate that fails on values. ``graph_for(candidate)`` gives the subject a
    control of that candidate runs (the candidate's export; the eager model for eager candidates), or None;
    ``module`` is the case's model (are there attention modules?); ``without_rewrite(candidate)`` exports without
    the case's own onnx_transform (None when the case has none); ``failing``: what ``failing_candidates`` found,
    when the caller has it already; ``own_exporter``: for a case that runs the user's own ONNX file, the exporter
    whose export of the same model is the control that tells the file from the model and the runtime."""
    from ..backends import REGISTRY
    from ..backends.candidates import parse

    deadline = time.monotonic() + task.control_budget
    failing = failing_candidates(task, row, tensors) if failing is None else failing
    controls: dict[str, dict[str, Any]] = {}
    present = set(task.backends)
    for name, failing_probes in failing.items():
        candidate = parse(name)
        chosen = {p: feeds for p, feeds in probes.items() if p in failing_probes}
        graph = graph_for(candidate)
        if graph is None:
            continue
        for control in _controls_for(candidate, module, row.exporter, own_exporter):
            if control["name"] in present or control["name"] in controls:
                continue
            if time.monotonic() > deadline:
                controls[control["name"]] = _not_run(name, "the case's control budget was spent")
                continue
            controls[control["name"]] = _run_control(task, control, name, graph, graph_for, chosen, tensors)
        on_graph = REGISTRY[candidate.backend].needs_onnx
        if on_graph and without_rewrite is not None and "rewrite" not in controls and time.monotonic() < deadline:
            controls["rewrite"] = _without_rewrite(
                task, candidate, chosen, without_rewrite(candidate), graph, row, tensors
            )
    if controls:
        row.controls = controls


def _controls_for(candidate: Any, module: Any, exporter: str | None, own_exporter: str | None) -> list[dict[str, Any]]:
    """The controls to run for a failing candidate, in order: the backend's declared first ones; on a graph,
    onnx-ref on the same graph, difftest's own export of a user's file, the program torch.export captured; then
    the backend's other declared controls. Each: {"name", "because", "graph": run on another export (True) or the
    model itself ("eager")}."""
    from ..backends import REGISTRY
    from ..backends.candidates import Candidate

    declared = REGISTRY[candidate.backend].controls(candidate, module)
    wanted = [_wanted(candidate, c) for c in declared if c.order == "first"]
    if REGISTRY[candidate.backend].needs_onnx:
        wanted.insert(
            0,
            {
                "name": _variant(Candidate("onnx-ref", ()), candidate, ("exporter", "transform")),
                "because": f"the ONNX specification's opinion on the graph {candidate.name} ran",
            },
        )
        if own_exporter and candidate.export_key(USER_FILE)[0] == USER_FILE:
            wanted.append(
                {
                    "name": with_settings(candidate, exporter=own_exporter),
                    "because": (
                        f"does difftest's own {own_exporter} export of the same model agree with "
                        "eager? Then the file (its export step or post-processing) makes the "
                        "gap"
                    ),
                    "graph": True,
                }
            )
        if (
            "torch-export" in REGISTRY
            and candidate.export_key(exporter or "dynamo")[0] == "dynamo"
            and not candidate.get("transform")
        ):
            wanted.append(
                {
                    "name": "torch-export",
                    "because": (
                        "does the program torch.export captured (run as a module, before any "
                        "ONNX translation) already differ from eager? Then the capture makes "
                        "the gap, else the ONNX translation"
                    ),
                    "graph": "eager",
                }
            )
    return wanted + [_wanted(candidate, c) for c in declared if c.order != "first"]


def _not_run(name: str, reason: str) -> dict[str, Any]:
    return {"kind": "backend", "ran": False, "for": name, "reason": reason}


def _run_control(
    task: Any,
    control: dict[str, Any],
    name: str,
    graph: Any,
    graph_for: Callable[[Any], Any],
    chosen: dict[str, dict[str, Any]],
    tensors: list[dict[str, Any]],
) -> dict[str, Any]:
    """Run one control of the failing candidate ``name`` on its failing probes (``chosen``); its rows go into
    ``tensors`` under the control's name. Returns what the case row's ``controls`` records of it."""
    from ..backends import REGISTRY
    from ..backends.candidates import parse
    from .backend_run import run_backend
    from .task import enter_stage

    spec = parse(control["name"])
    backend = REGISTRY[spec.backend](threads=task.threads, options=dict(spec.settings))
    reason = backend.unavailable_reason()
    if reason:
        return _not_run(name, reason)
    enter_stage(f"control ({control['name']})")
    before = len(tensors)
    # A control on another export, or one that runs the model itself (torch-export)
    control_graph = graph_for(spec) if control.get("graph") else graph
    if control_graph is None:
        return _not_run(name, "its export failed (see the case's exports)")
    run_backend(task, backend, control_graph, chosen, tensors, 0, name=control["name"])
    skipped = [t for t in tensors[before:] if t["status"] == "skipped"]
    return {
        "kind": "backend",
        "ran": not skipped,
        "for": name,
        "because": control["because"],
        "probes": sorted(chosen),
        **({"reason": skipped[0]["message"]} if skipped else {}),
    }


def _wanted(candidate: Any, control: Any) -> dict[str, str]:
    """A declared control (``backends.base.Control``) as the control to run for ``candidate``."""
    return {
        "name": with_settings(candidate, **control.changes()),
        "because": control.because.format(name=candidate.name),
    }


def _variant(base: Any, candidate: Any, keys: tuple[str, ...]) -> str:
    """``base`` with the candidate's settings among ``keys`` (so it runs the same export)."""
    return with_settings(base, **{k: v for k, v in candidate.settings if k in keys})


def _without_rewrite(
    task: Any,
    candidate: Any,
    probes: dict[str, Any],
    raw: Any,
    graph: Any,
    row: CaseRow,
    tensors: list[dict[str, Any]],
) -> dict[str, Any]:
    """Run ``candidate`` on the export without the case's own onnx_transform: does the rewrite make the gap? Its
    rows are recorded (pseudo-backend ``without_rewrite:<candidate>``), so the judge reads its verdict from them
    (``judge.blame.rewrite_control``), a re-judge included; the fact recorded here is what this run saw."""
    from ..backends import REGISTRY
    from ..judge.blame import rewrite_control
    from ..record.names import WITHOUT_REWRITE
    from ..record.recorded import Recorded
    from .backend_run import run_backend

    if not raw.ok:
        return {
            "kind": "fact",
            "ran": False,
            "candidate": candidate.name,
            "reason": f"the export without the rewrite failed: {(raw.error or '')[:300]}",
        }
    backend = REGISTRY[candidate.backend](threads=task.threads, options=dict(candidate.settings))
    name = f"{WITHOUT_REWRITE}:{candidate.name}"
    before = len(tensors)
    run_backend(task, backend, graph.with_graph(raw), probes, tensors, 0, name=name)
    failed = next((t for t in tensors[before:] if t["status"] != "ok"), None)
    if failed is not None:
        return {
            "kind": "fact",
            "ran": False,
            "candidate": candidate.name,
            "reason": f"the runtime failed on the export without the rewrite: {(failed['message'] or '')[:300]}",
        }
    agrees, shown = rewrite_control(Recorded(tensors), task.reference, candidate.name, row.tolerances or {})
    return {"kind": "fact", "ran": True, "candidate": candidate.name, "agrees": agrees, "evidence": shown}
