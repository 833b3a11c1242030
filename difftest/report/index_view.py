"""What the index shows, computed from the tables: the run and its environment, the numeric verdicts by the
rule that accepted them, the strip of max error ÷ tolerance, the slowest cases."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any


ENVIRONMENT_FACTS = (
    "onnxruntime",
    "ort_providers",
    "ort_build",
    "ort_distributions",
    "torch_cuda",
    "torch_cudnn",
    "repositories",
    "variables",
)


def run_view(run: dict[str, Any], tensors: list[dict[str, Any]]) -> dict[str, Any]:
    providers: dict[str, list[str]] = {}
    for t in tensors:
        listed = t.get("providers") or []
        if listed and t["backend"] not in providers:
            providers[t["backend"]] = list(listed)  # in the session's priority order
    # Runs recorded before the environment block existed have none: every fact the page reads is present.
    environment = {**dict.fromkeys(ENVIRONMENT_FACTS), **(run.get("environment") or {})}
    versions = run["versions"] or {}
    distributions = environment.get("ort_distributions") or [
        f"{d} {versions[d]}" for d in ("onnxruntime", "onnxruntime-gpu") if d in versions
    ]
    if not environment["onnxruntime"] and len(distributions) > 1:
        used = sorted({p for listed in providers.values() for p in listed})
        if "CUDAExecutionProvider" in used:
            environment["onnxruntime"] = (
                "not recorded by this run; its sessions ran on CUDAExecutionProvider, which "
                "only onnxruntime-gpu provides, so that is the one imported"
            )
    from ..backends import ORACLE

    return {
        **run,
        "oracle": ORACLE,
        "versions": versions,
        "skipped": (run["backends_skipped"] or {}),
        "providers": dict(sorted(providers.items())),
        "environment": environment,
        "ort_conflict": len(distributions) > 1,
        "ort_distributions": distributions,
    }


def numeric_breakdown(outcomes: list[Any]) -> list[tuple[str, int]]:
    """How many numeric results were within tolerance and how many a rule accepted beyond it, by rule."""
    counts: Counter = Counter()
    for o in outcomes:
        if o.label != "numeric":
            continue
        for rule in o.accepted_by or ["within tolerance"]:
            counts[rule] += 1
    return sorted(counts.items(), key=lambda item: (item[0] != "within tolerance", -item[1]))


def error_strip(worst: dict[tuple[str, str], float], candidates: list[str], cases: list[str]) -> list[dict[str, Any]]:
    """Per candidate, per case: the largest |Δ| ÷ (atol + rtol·|reference|) (``history.worst_ratios``) as a level
    0 (exact) .. 5 (≥ 100× the tolerance), so a glance finds the cases closest to failing."""
    strips = []
    for candidate in candidates:
        cells = []
        for case in cases:
            ratio = worst.get((candidate, case))
            cells.append({"case": case, "ratio": ratio, "level": _level(ratio)})
        strips.append({"candidate": candidate, "cells": cells})
    return strips


def _level(ratio: float | None) -> int | None:
    if ratio is None:
        return None
    if ratio == 0:
        return 0
    if ratio <= 0.1:
        return 1
    if ratio <= 1:
        return 2
    if ratio <= 10:
        return 3
    if not math.isfinite(ratio) or ratio > 100:
        return 5
    return 4


def slowest(
    cases: list[dict[str, Any]], tensors: list[dict[str, Any]], page_of: Any, limit: int = 10
) -> list[dict[str, Any]]:
    """The slowest cases with their time split: export, session builds, runs (all backends, probes, reruns)."""
    from .summary import backend_times

    run_time: dict[str, float] = defaultdict(float)
    sessions: dict[str, float] = defaultdict(float)
    for (case_id, _), (runs, prepare) in backend_times(tensors).items():
        run_time[case_id] += runs
        sessions[case_id] += prepare
    ranked = sorted(cases, key=lambda c: -(c.get("seconds") or 0))[:limit]
    return [
        {
            "case": c["case"],
            "page": page_of(c["case"]),
            "total": c.get("seconds"),
            "export": c.get("export_seconds"),
            "cached": c.get("export_cached"),
            "sessions": sessions[c["case"]],
            "runs": run_time[c["case"]],
        }
        for c in ranked
    ]


def sparkline(values: list[float | None], width: int = 60, height: int = 14) -> str | None:
    """SVG polyline points for a series of max-error ratios across runs (log scale), or None."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(points) < 2:
        return None
    logs = [math.log10(max(v, 1e-6)) if math.isfinite(v) else 3.0 for _, v in points]
    low, high = min(logs), max(logs)
    span = (high - low) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - 1 - (y - low) / span * (height - 2):.1f}" for (i, _), y in zip(points, logs)
    )
