"""What a case page shows beyond the tables: charts, the worst elements, and a repro bundle.

Built from the recorded tensors of one case (never from a model run), for the comparisons a reader has
to look at: every one that is not ``exact``, worst probe first, a bounded number per case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..classify import LABELS
from ..compare import format_value
from ..recorded import Recorded

MAX_DETAILED = 6
WORST_ROWS = 10
DETAIL_LABELS = {label for label in LABELS if label not in ("exact", "skipped", "export_error", "runtime_error",
                                                            "crash", "timeout")}


def comparison_details(case: dict[str, Any], comparisons: list[dict[str, Any]], rec: Recorded,
                       charts: bool = True) -> list[dict]:
    """One entry per (candidate, output) worth a closer look: charts and the worst elements."""
    from ..classify import severity
    from .charts import comparison_charts

    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for c in sorted(comparisons, key=lambda c: -severity(c["label"])):
        if c["label"] in DETAIL_LABELS and c["output"] != "*":
            chosen.setdefault((c["candidate"], c["output"]), c)
    details = []
    for (candidate, output), c in list(chosen.items())[:MAX_DETAILED]:
        ref = rec.array(c["reference"], c["probe"], output)
        cand = rec.array(candidate, c["probe"], output)
        if ref is None or cand is None:
            continue
        details.append({
            "comparison": c,
            "charts": comparison_charts(ref, cand, output) if charts else {},
            "worst": worst_elements(ref, cand, _ranked(rec, case, candidate, c["probe"], output)),
        })
    return details


def _ranked(rec: Recorded, case: dict[str, Any], candidate: str, probe: str, output: str) -> np.ndarray | None:
    from ..candidates import ranked_source

    source = ranked_source(case, candidate)
    return rec.array(source, probe, output) if source else None


def worst_elements(reference: np.ndarray, candidate: np.ndarray, ranked: np.ndarray | None = None,
                   limit: int = WORST_ROWS) -> list[dict[str, Any]]:
    """The positions that differ most, with both values (and, for index outputs, the values they point at)."""
    if reference.shape != candidate.shape or reference.size == 0:
        return []
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(ref - cand)
    nan_mismatch = np.isnan(ref) != np.isnan(cand)
    score = np.where(nan_mismatch, np.inf, np.nan_to_num(diff, nan=0.0))
    flat = score.reshape(-1)
    count = min(limit, int((flat > 0).sum()))
    if count == 0:
        return []
    top = np.argpartition(-flat, count - 1)[:count]
    top = top[np.argsort(-flat[top], kind="stable")]
    rows = []
    for position in top:
        index = tuple(int(i) for i in np.unravel_index(int(position), reference.shape))
        row = {"index": list(index), "reference": format_value(reference[index]),
               "candidate": format_value(candidate[index]), "abs": format_value(float(diff[index]))}
        if ranked is not None and reference.dtype.kind in "iu":
            row["tied_values"] = _tied_values(ranked, index, int(reference[index]), int(candidate[index]))
        rows.append(row)
    return rows


def _tied_values(ranked: np.ndarray, index: tuple[int, ...], ref_pick: int, cand_pick: int) -> str:
    """The ranked values at the two picked positions (last axis), e.g. '3 vs 3'."""
    try:
        base = index[: ranked.ndim - 1] if len(index) >= ranked.ndim - 1 else index
        row = ranked[base] if base else ranked
        return f"{format_value(row[..., ref_pick].item())} vs {format_value(row[..., cand_pick].item())}"
    except (IndexError, ValueError):
        return ""


def write_repro(case: dict[str, Any], comparisons: list[dict[str, Any]], rec: Recorded, folder: Path) -> Path | None:
    """A bundle in the standard ONNX test format for the case's worst failing comparison.

    ``model.onnx`` is the graph the failing candidate ran, ``test_data_set_0`` holds its inputs and the
    reference's outputs (the expected values), and ``outputs/<backend>/`` every backend's outputs, so
    onnxruntime's own test runner can replay it and the folder can be attached to an upstream issue.
    """
    from onnx import numpy_helper

    from ..candidates import case_export_name
    from ..classify import severity

    failing = [c for c in comparisons if not c["passed"] and c["probe"] != "*"]
    if not failing:
        return None
    worst = max(failing, key=lambda c: severity(c["label"]))
    candidate, probe, reference = worst["candidate"], worst["probe"], worst["reference"]
    exports = json.loads(case.get("exports") or "{}")
    key = case_export_name(case, candidate)
    from ..tables import run_artifact

    model_path = run_artifact(folder.parent.parent, (exports.get(key) or {}).get("onnx_path"))
    if model_path is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(Path(model_path).read_bytes())
    data_set = folder / "test_data_set_0"
    data_set.mkdir(exist_ok=True)
    graph_inputs = (exports.get(key) or {}).get("graph_inputs") or rec.outputs("input", probe)
    for i, name in enumerate(graph_inputs):
        array = rec.array("input", probe, name)
        if array is not None:
            (data_set / f"input_{i}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
    outputs = rec.outputs(reference, probe)
    for i, name in enumerate(outputs):
        (data_set / f"output_{i}.pb").write_bytes(
            numpy_helper.from_array(rec.array(reference, probe, name), name).SerializeToString())
    for backend in rec.order:
        if backend in ("input",) or backend.startswith("ranked"):
            continue
        arrays = [rec.array(backend, probe, name) for name in outputs]
        if any(a is None for a in arrays):
            continue
        target = folder / "outputs" / _safe(backend)
        target.mkdir(parents=True, exist_ok=True)
        for i, (name, array) in enumerate(zip(outputs, arrays)):
            (target / f"output_{i}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
    (folder / "README.txt").write_text(
        f"difftest repro for {case['case']}\n"
        f"candidate {candidate} on probe {probe}: {worst['label']} (reference {reference})\n"
        f"evidence: {worst['evidence']}\n\n"
        "test_data_set_0/ holds the inputs and the reference's outputs (the expected values);\n"
        "outputs/<backend>/ holds what each backend computed on the same inputs.\n"
        "Replay: onnx_test_runner <this folder>   (or load model.onnx with onnxruntime and feed the inputs)\n")
    return folder


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
