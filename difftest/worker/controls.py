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

import json
import time
from typing import Any, Callable

from ..backends.candidates import USER_FILE, with_settings


def failing_candidates(task: Any, row: dict[str, Any], tensors: list[dict[str, Any]]) -> dict[str, set[str]]:
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
    for comparison in judge_case({**row, "status": "ok", "controls": None}, tensors, context):
        if comparison["label"] in WRONG_VALUES and comparison["probe"] != "*":
            failing.setdefault(comparison["candidate"], set()).add(comparison["probe"])
    return failing


def run_controls(
    task: Any,
    row: dict[str, Any],
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
    from ..backends.candidates import Candidate, parse
    from .backend_run import run_backend
    from .task import enter_stage

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
        declared = REGISTRY[candidate.backend].controls(candidate, module)
        wanted = [_wanted(candidate, c) for c in declared if c.order == "first"]
        on_graph = REGISTRY[candidate.backend].needs_onnx
        if on_graph:
            wanted.insert(
                0,
                {
                    "name": _variant(Candidate("onnx-ref", ()), candidate, ("exporter", "transform")),
                    "because": f"the ONNX specification's opinion on the graph {name} ran",
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
                and candidate.export_key(row.get("exporter") or "dynamo")[0] == "dynamo"
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
        wanted += [_wanted(candidate, c) for c in declared if c.order != "first"]
        for control in wanted:
            control_name = control["name"]
            if control_name in present or control_name in controls:
                continue
            if time.monotonic() > deadline:
                controls[control_name] = {
                    "kind": "backend",
                    "ran": False,
                    "for": name,
                    "reason": "the case's control budget was spent",
                }
                continue
            spec = parse(control_name)
            backend = REGISTRY[spec.backend](threads=task.threads, options=dict(spec.settings))
            reason = backend.unavailable_reason()
            if reason:
                controls[control_name] = {"kind": "backend", "ran": False, "for": name, "reason": reason}
                continue
            enter_stage(f"control ({control_name})")
            before = len(tensors)
            # A control on another export, or one that runs the model itself (torch-export)
            control_graph = graph_for(spec) if control.get("graph") else graph
            if control_graph is None:
                controls[control_name] = {
                    "kind": "backend",
                    "ran": False,
                    "for": name,
                    "reason": "its export failed (see the case's exports)",
                }
                continue
            run_backend(task, backend, control_graph, chosen, tensors, 0, name=control_name)
            skipped = [t for t in tensors[before:] if t["status"] == "skipped"]
            controls[control_name] = {
                "kind": "backend",
                "ran": not skipped,
                "for": name,
                "because": control["because"],
                "probes": sorted(chosen),
                **({"reason": skipped[0]["message"]} if skipped else {}),
            }
        if on_graph and without_rewrite is not None and "rewrite" not in controls and time.monotonic() < deadline:
            controls["rewrite"] = _without_rewrite(
                task, candidate, chosen, without_rewrite(candidate), graph, row, tensors
            )
    if controls:
        row["controls"] = json.dumps(controls)


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
    row: dict[str, Any],
    tensors: list[dict[str, Any]],
) -> dict[str, Any]:
    """Run ``candidate`` on the export without the case's own onnx_transform: does the rewrite make the gap?"""
    from ..backends import REGISTRY
    from ..judge.classify import classify
    from ..judge.verdicts import output_tolerance
    from ..record.tables import decode

    if not raw.ok:
        return {
            "kind": "fact",
            "ran": False,
            "candidate": candidate.name,
            "reason": f"the export without the rewrite failed: {(raw.error or '')[:300]}",
        }
    backend = REGISTRY[candidate.backend](threads=task.threads, options=dict(candidate.settings))
    subject = graph.with_graph(raw)
    scratch: list[dict[str, Any]] = []
    from .backend_run import run_backend

    run_backend(task, backend, subject, probes, scratch, 0, name=candidate.name)
    tolerances = json.loads(row.get("tolerances") or "{}")
    labels = []
    for t in scratch:
        if t["status"] != "ok":
            return {
                "kind": "fact",
                "ran": False,
                "candidate": candidate.name,
                "reason": f"the runtime failed on the export without the rewrite: {(t['message'] or '')[:300]}",
            }
        reference = next(
            (
                r
                for r in tensors
                if r["backend"] == task.reference
                and r["probe"] == t["probe"]
                and r["output"] == t["output"]
                and not r["rerun"]
                and r["status"] == "ok"
            ),
            None,
        )
        if reference is None:
            continue
        verdict = classify(decode(reference), decode(t), *output_tolerance(tolerances, t["output"]))
        labels.append((t["probe"], t["output"], verdict.label, verdict.passed))
    agrees = bool(labels) and all(passed for *_, passed in labels)
    shown = "; ".join(f"{probe}/{output}: {label}" for probe, output, label, _ in labels[:4])
    return {"kind": "fact", "ran": True, "candidate": candidate.name, "agrees": agrees, "evidence": shown}
