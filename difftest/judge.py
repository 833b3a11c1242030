"""The compare phase: from the recorded tables to comparisons and per-case outcomes.

Reads only the ``runs``, ``cases`` and ``tensors`` tables, so an old run can
be re-judged by a newer classifier without running a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .classify import LABELS, Verdict, classify, passes, severity
from .tables import decode, read_table

CASE_FAILURE_LABELS = {"crash": "crash", "timeout": "timeout"}


def judge_run(run_dir: Path) -> list[dict[str, Any]]:
    """Comparison rows for every case × probe × output × candidate of a stored run."""
    import polars as pl

    runs = read_table(run_dir, "runs").to_dicts()[0]
    cases = read_table(run_dir, "cases")
    tensors = read_table(run_dir, "tensors")
    reference = runs["reference"]
    candidates = [b for b in runs["backends_requested"] if b != reference]
    skipped = json.loads(runs["backends_skipped"] or "{}")
    rows: list[dict[str, Any]] = []
    for case in cases.to_dicts():
        case_tensors = tensors.filter(pl.col("case") == case["case"]).to_dicts()
        rows.extend(judge_case(runs["run"], case, case_tensors, reference, candidates, skipped))
    return rows


def judge_case(run: str, case: dict[str, Any], tensors: list[dict[str, Any]], reference: str,
               candidates: list[str], skipped: dict[str, str]) -> list[dict[str, Any]]:
    base = {"run": run, "case": case["case"], "reference": reference}

    def row(candidate: str, verdict: Verdict, probe: str = "*", output: str = "*", stage: str | None = None) -> dict:
        return comparison_row(base, candidate, verdict, probe, output, stage)

    if case["status"] != "ok":
        verdict = _case_failure(case, reference)
        return [row(c, Verdict("skipped", skipped[c])) if c in skipped else row(c, verdict, stage=case["stage"])
                for c in candidates]
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for t in tensors:
        by_backend.setdefault(t["backend"], []).append(t)
    ref_rows = by_backend.get(reference, [])
    ref_ok = {(t["probe"], t["output"]): t for t in ref_rows if t["status"] == "ok" and t["rerun"] == 0}
    ref_failed = {t["probe"]: t for t in ref_rows if t["status"] == "error"}
    tolerances = json.loads(case.get("tolerances") or "{}")
    out: list[dict[str, Any]] = []
    for candidate in candidates:
        if candidate in skipped:
            out.append(row(candidate, Verdict("skipped", skipped[candidate])))
            continue
        cand_rows = by_backend.get(candidate, [])
        whole = next((t for t in cand_rows if t["probe"] == "*"), None)
        if whole is not None:
            out.append(row(candidate, _stage_verdict(whole, candidate), stage=whole["stage"]))
            continue
        if not cand_rows:
            out.append(row(candidate, Verdict("runtime_error", "no results recorded for this backend", blame=candidate)))
            continue
        for probe in _ordered_probes(cand_rows, ref_rows):
            if probe in ref_failed:
                failure = ref_failed[probe]
                out.append(row(candidate, Verdict("runtime_error", f"the reference ({reference}) failed at "
                                                  f"{failure['stage']}: {failure['message']}", blame=reference),
                               probe=probe, stage=failure["stage"]))
                continue
            probe_rows = [t for t in cand_rows if t["probe"] == probe and t["rerun"] == 0]
            failed = next((t for t in probe_rows if t["status"] != "ok"), None)
            if failed is not None:
                out.append(row(candidate, _stage_verdict(failed, candidate), probe=probe, stage=failed["stage"]))
                continue
            for t in probe_rows:
                ref_tensor = ref_ok.get((probe, t["output"]))
                if ref_tensor is None:
                    verdict = Verdict("shape", f"output {t['output']!r} has no counterpart in the reference")
                else:
                    rtol, atol = _tolerance(tolerances, t["output"])
                    verdict = classify(decode(ref_tensor), decode(t), rtol, atol)
                    if ref_tensor.get("sampled") or t.get("sampled"):
                        verdict.evidence += " (compared on an even sample: the tensor exceeded the stored size)"
                if not verdict.passed and verdict.blame is None:
                    verdict.blame = candidate
                out.append(row(candidate, verdict, probe=probe, output=t["output"]))
    return out


def comparison_row(base: dict[str, Any], candidate: str, verdict: Verdict, probe: str, output: str,
                   stage: str | None) -> dict[str, Any]:
    m = verdict.metrics
    return {
        **base,
        "probe": probe,
        "output": output,
        "candidate": candidate,
        "label": verdict.label,
        "passed": verdict.passed,
        "max_abs": m.max_abs if m else None,
        "mean_abs": m.mean_abs if m else None,
        "max_rel": m.max_rel if m else None,
        "mismatched": m.mismatched if m else None,
        "count": m.count if m else None,
        "ulp_max": m.ulp_max if m else None,
        "ulp_p50": m.ulp_p50 if m else None,
        "ulp_p99": m.ulp_p99 if m else None,
        "rtol": m.rtol if m else None,
        "atol": m.atol if m else None,
        "worst_index": list(m.worst_index) if m and m.worst_index is not None else None,
        "evidence": verdict.evidence,
        "blame": verdict.blame,
        "stage": stage,
    }


@dataclass
class Outcome:
    """One case × candidate: the worst label found, what was expected, and whether that is a failure."""

    case: str
    candidate: str
    label: str
    expected: list[str] | None
    status: str  # "pass" | "fail" | "xfail" | "skipped"
    reason: str
    evidence: str
    probe: str | None

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def outcomes(cases: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> list[Outcome]:
    """Aggregate comparisons per case × candidate and hold them against the case's expectations."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in comparisons:
        grouped.setdefault((c["case"], c["candidate"]), []).append(c)
    expects = {c["case"]: json.loads(c["expect"]) if c.get("expect") else None for c in cases}
    result = []
    for (case_id, candidate), rows in grouped.items():
        worst = max(rows, key=lambda r: severity(r["label"]))
        expected = expected_labels(expects.get(case_id), candidate)
        label = worst["label"]
        if label == "skipped":
            status, reason = "skipped", "backend not available here"
        elif expected is None:
            status = "pass" if passes(label) else "fail"
            reason = "" if passes(label) else f"unexpected {label}"
        elif label in expected:
            status = "pass" if passes(label) else "xfail"
            reason = f"expected {label}"
        else:
            status = "fail"
            reason = f"expected {' or '.join(expected)}, got {label}"
        result.append(Outcome(case_id, candidate, label, expected, status, reason, worst["evidence"],
                              worst["probe"]))
    return result


def expected_labels(expect: Any, candidate: str) -> list[str] | None:
    """The labels a case declared acceptable for ``candidate`` (None: no expectation)."""
    if expect is None:
        return None
    if isinstance(expect, dict):
        value = expect.get(candidate, expect.get("*"))
    else:
        value = expect
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def validate_expect(expect: Any) -> str | None:
    """A message if an expectation names a label that does not exist."""
    values: list[Any] = []
    for value in (expect.values() if isinstance(expect, dict) else [expect]):
        values.extend([value] if isinstance(value, str) else list(value))
    unknown = sorted({v for v in values if v not in LABELS})
    return f"unknown label(s) in expect: {', '.join(unknown)} (known: {', '.join(LABELS)})" if unknown else None


def _case_failure(case: dict[str, Any], reference: str) -> Verdict:
    status, stage, message = case["status"], case["stage"], case["message"] or ""
    if status in CASE_FAILURE_LABELS:
        return Verdict(CASE_FAILURE_LABELS[status], message, blame=None)
    if stage == "build":
        return Verdict("export_error", f"the case factory failed: {message}", blame="case")
    if stage == "reference":
        return Verdict("runtime_error", f"the reference ({reference}) failed: {message}", blame=reference)
    return Verdict("crash", f"difftest failed at {stage or 'an unknown stage'}: {message}", blame="difftest")


def _stage_verdict(row: dict[str, Any], candidate: str) -> Verdict:
    if row["status"] == "skipped":
        return Verdict("skipped", row["message"] or "")
    stage = row["stage"] or "run"
    if stage in ("export", "onnx_transform"):
        blame = "exporter" if stage == "export" else "onnx_transform"
        return Verdict("export_error", f"{stage} failed: {row['message']}", blame=blame)
    return Verdict("runtime_error", f"{stage} failed: {row['message']}", blame=candidate)


def _tolerance(tolerances: dict[str, Any], output: str) -> tuple[float | None, float | None]:
    per_output = (tolerances.get("per_output") or {}).get(output)
    if per_output:
        return float(per_output[0]), float(per_output[1])
    return tolerances.get("rtol"), tolerances.get("atol")


def _ordered_probes(cand_rows: list[dict[str, Any]], ref_rows: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for t in ref_rows + cand_rows:
        if t["probe"] != "*" and t["probe"] not in seen:
            seen.append(t["probe"])
    return [p for p in seen if any(t["probe"] == p for t in cand_rows)]
