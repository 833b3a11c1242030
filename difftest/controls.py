"""Automatic controls: extra runs for a candidate that fails, so blame rests on evidence, not on a guess.

Runs inside the worker, after every candidate has run. The case is judged on the spot (the same judge the
parent uses later); for each ONNX candidate with a value failure (mismatch, layout, nonfinite, shape):

- ``onnx-ref`` on the same graph: the ONNX specification's reference implementation (numpy), a third opinion
  that separates the graph from the runtime;
- the same runtime with ORT's graph optimizations off (``<candidate>[opt=disable]``): does an optimization
  change the result?
- when the case rewrites its export (``onnx_transform``): the same runtime on the export without the rewrite.

Controls run only on the failing probes, within ``Task.control_budget`` seconds per case; what could not run
is recorded with the reason. The case row's ``controls`` column holds, per control, whether it ran, for which
candidate and why; control backends' outputs are ordinary tensors rows, judged like candidates (blame reads
them) but never counted as results of their own.
"""

from __future__ import annotations

import json
import time
from typing import Any

VALUE_FAILURES = {"mismatch", "layout", "nonfinite", "shape"}


def failing_candidates(task: Any, row: dict[str, Any], tensors: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Candidate -> probes on which it has a value failure, by the same judge the parent runs."""
    from .judge import RunContext, judge_case

    variants = set(task.reference_variants or ())
    context = RunContext(run=task.run_id, reference=task.reference,
                         candidates=[b for b in task.backends if b != task.reference and b not in variants],
                         skipped={}, oracle=next(iter(variants), None))
    failing: dict[str, set[str]] = {}
    for comparison in judge_case({**row, "status": "ok", "controls": None}, tensors, context):
        if comparison["label"] in VALUE_FAILURES and comparison["probe"] != "*":
            failing.setdefault(comparison["candidate"], set()).add(comparison["probe"])
    return failing


def run_controls(task: Any, built: Any, row: dict[str, Any], tensors: list[dict[str, Any]],
                 probes: dict[str, dict[str, Any]], subject: Any, exports: Any, guard: Any) -> None:
    from .backends import REGISTRY, Subject
    from .candidates import Candidate, parse
    from .execute import _stage, run_backend

    deadline = time.monotonic() + task.control_budget
    failing = failing_candidates(task, row, tensors)
    controls: dict[str, dict[str, Any]] = {}
    present = set(task.backends)
    for name, failing_probes in failing.items():
        candidate = parse(name)
        if not REGISTRY[candidate.backend].needs_onnx:
            continue
        chosen = {p: feeds for p, feeds in probes.items() if p in failing_probes}
        key = candidate.export_key(row["exporter"])
        exported = exports.get(key)
        if not exported.ok:
            continue
        graph = Subject(subject.module, subject.input_names, subject.output_names, subject.call,
                        onnx_bytes=exported.onnx_bytes, graph_inputs=exported.graph_inputs)
        wanted = [{"name": _variant(Candidate("onnx-ref", ()), candidate, ("exporter", "transform")),
                   "because": f"the ONNX specification's opinion on the graph {name} ran"}]
        if candidate.backend in ("ort-cpu", "ort-cuda") and candidate.get("opt") != "disable":
            settings = dict(candidate.settings)
            settings["opt"] = "disable"
            wanted.append({"name": parse(f"{candidate.backend}[{','.join(f'{k}={v}' for k, v in settings.items())}]"
                                         ).name, "because": f"does an ORT graph optimization change {name}'s result?"})
        for control in wanted:
            control_name = control["name"]
            if control_name in present or control_name in controls:
                continue
            if time.monotonic() > deadline:
                controls[control_name] = {"kind": "backend", "ran": False, "for": name,
                                          "reason": "the case's control budget was spent"}
                continue
            spec = parse(control_name)
            backend = REGISTRY[spec.backend](threads=task.threads, options=dict(spec.settings))
            reason = backend.unavailable_reason()
            if reason:
                controls[control_name] = {"kind": "backend", "ran": False, "for": name, "reason": reason}
                continue
            _stage(f"control ({control_name})")
            before = len(tensors)
            run_backend(task, backend, graph, chosen, tensors, 0, name=control_name)
            skipped = [t for t in tensors[before:] if t["status"] == "skipped"]
            controls[control_name] = {"kind": "backend", "ran": not skipped, "for": name,
                                      "because": control["because"], "probes": sorted(chosen),
                                      **({"reason": skipped[0]["message"]} if skipped else {})}
        if built.onnx_transform is not None and "rewrite" not in controls and time.monotonic() < deadline:
            controls["rewrite"] = _without_rewrite(task, candidate, key, chosen, exports, graph, row, tensors)
    if controls:
        row["controls"] = json.dumps(controls)


def _variant(base: Any, candidate: Any, keys: tuple[str, ...]) -> str:
    """``base`` with the candidate's settings among ``keys`` (so it runs the same export)."""
    from .candidates import parse

    settings = {k: v for k, v in candidate.settings if k in keys}
    if not settings:
        return base.name
    return parse(f"{base.backend}[{','.join(f'{k}={v}' for k, v in settings.items())}]").name


def _without_rewrite(task: Any, candidate: Any, key: tuple[str, str | None], probes: dict[str, Any], exports: Any,
                     graph: Any, row: dict[str, Any], tensors: list[dict[str, Any]]) -> dict[str, Any]:
    """Run ``candidate`` on the export without the case's own onnx_transform: does the rewrite make the gap?"""
    from .backends import REGISTRY, Subject
    from .classify import classify
    from .judge import output_tolerance
    from .tables import decode

    raw = exports.raw(key)
    if not raw.ok:
        return {"kind": "fact", "ran": False, "candidate": candidate.name,
                "reason": f"the export without the rewrite failed: {(raw.error or '')[:300]}"}
    backend = REGISTRY[candidate.backend](threads=task.threads, options=dict(candidate.settings))
    subject = Subject(graph.module, graph.input_names, graph.output_names, graph.call, onnx_bytes=raw.onnx_bytes,
                      graph_inputs=raw.graph_inputs)
    scratch: list[dict[str, Any]] = []
    from .execute import run_backend

    run_backend(task, backend, subject, probes, scratch, 0, name=candidate.name)
    tolerances = json.loads(row.get("tolerances") or "{}")
    labels = []
    for t in scratch:
        if t["status"] != "ok":
            return {"kind": "fact", "ran": False, "candidate": candidate.name,
                    "reason": f"the runtime failed on the export without the rewrite: {(t['message'] or '')[:300]}"}
        reference = next((r for r in tensors if r["backend"] == task.reference and r["probe"] == t["probe"]
                          and r["output"] == t["output"] and not r["rerun"] and r["status"] == "ok"), None)
        if reference is None:
            continue
        verdict = classify(decode(reference), decode(t), *output_tolerance(tolerances, t["output"]))
        labels.append((t["probe"], t["output"], verdict.label, verdict.passed))
    agrees = bool(labels) and all(passed for *_, passed in labels)
    shown = "; ".join(f"{probe}/{output}: {label}" for probe, output, label, _ in labels[:4])
    return {"kind": "fact", "ran": True, "candidate": candidate.name, "agrees": agrees, "evidence": shown}
