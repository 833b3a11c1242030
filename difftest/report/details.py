"""What a case page shows beyond the tables: charts, the worst elements, and a repro bundle.

Built from the recorded tensors of one case (never from a model run), for the comparisons a reader has
to look at: every one that is not ``exact``, worst probe first, a bounded number per case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..judge.classify import LABELS
from ..judge.compare import format_value
from ..record.names import pseudo_backend
from ..record.recorded import Recorded

MAX_DETAILED = 6
WORST_ROWS = 10
DETAIL_LABELS = {
    label for label in LABELS if label not in ("exact", "skipped", "export_error", "runtime_error", "crash", "timeout")
}


def comparison_details(
    case: dict[str, Any],
    comparisons: list[dict[str, Any]],
    rec: Recorded,
    charts: bool = True,
    identical: list[list[str]] | None = None,
) -> list[dict]:
    """One entry per (candidate, output) worth a closer look: charts and the worst elements.

    ``identical`` lists groups of candidates with bit-identical outputs: one entry serves its group."""
    from ..judge.classify import severity
    from .charts import comparison_charts

    same_as = {member: group[0] for group in identical or [] for member in group[1:]}
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for c in sorted(comparisons, key=lambda c: -severity(c["label"])):
        if c["label"] in DETAIL_LABELS and c["output"] != "*" and c["candidate"] not in same_as:
            chosen.setdefault((c["candidate"], c["output"]), c)
    details = []
    for (candidate, output), c in list(chosen.items())[:MAX_DETAILED]:
        ref = rec.array(c["reference"], c["probe"], output)
        cand = rec.array(candidate, c["probe"], output)
        if ref is None or cand is None:
            continue
        ranked = _ranked(rec, case, candidate, c["probe"], output)
        orderings = two_orderings(ref, cand, ranked) if c["label"] in ORDERING_LABELS or _reordered(c) else None
        details.append(
            {
                "comparison": c,
                "same": [m for m, first in same_as.items() if first == candidate],
                "orderings": orderings,
                "charts": comparison_charts(ref, cand, output) if charts and not orderings else {},
                "worst": worst_elements(ref, cand, ranked),
            }
        )
    return details


ORDERING_LABELS = {"tie_break"}
ORDERING_ROWS = 8
ORDERING_WIDTH = 16


def _reordered(comparison: dict[str, Any]) -> bool:
    """A layout verdict that found the same rows in another order (NMS-style sets) is drawn as two orderings."""
    return comparison["label"] == "layout" and "reordered" in (comparison.get("evidence") or "")


def two_orderings(
    reference: np.ndarray,
    candidate: np.ndarray,
    ranked: np.ndarray | None = None,
    rows: int = ORDERING_ROWS,
    width: int = ORDERING_WIDTH,
) -> dict[str, Any] | None:
    """The slices (along the last axis) where the two orders differ, side by side.

    A tie or an unordered set is not an error map: what a reader needs is the two sequences next to each
    other (and, for index outputs, the values the indices point at) to see that they hold the same things.
    """
    if reference.shape != candidate.shape or reference.size == 0:
        return None
    ref = reference.reshape(-1, reference.shape[-1]) if reference.ndim else reference.reshape(1, 1)
    cand = candidate.reshape(ref.shape)
    differs = np.flatnonzero(np.any(_differ(ref, cand), axis=1))
    if differs.size == 0:
        return None
    lead = reference.shape[:-1]
    out = []
    for row in differs[:rows]:
        where = np.flatnonzero(_differ(ref[row], cand[row]))
        start = max(0, min(int(where[0]) - 2, ref.shape[1] - width))
        stop = min(ref.shape[1], start + width)
        index = [int(i) for i in np.unravel_index(int(row), lead)] if lead else []
        entry = {
            "index": f"{index + [f'{start}:{stop}']}".replace("'", ""),
            "reference": _sequence(ref[row, start:stop], start > 0, stop < ref.shape[1]),
            "candidate": _sequence(cand[row, start:stop], start > 0, stop < ref.shape[1]),
        }
        if ranked is not None and reference.dtype.kind in "iu" and lead == ranked.shape[:-1]:
            values = ranked.reshape(-1, ranked.shape[-1])[row]
            picked = [_pick(values, i) for i in (ref[row, start:stop], cand[row, start:stop])]
            entry["reference"] += f"  → values {_sequence(picked[0], start > 0, stop < ref.shape[1])}"
            entry["candidate"] += f"  → values {_sequence(picked[1], start > 0, stop < ref.shape[1])}"
        out.append(entry)
    note = f"{differs.size} of {ref.shape[0]} slices differ"
    if differs.size > rows:
        note += f", first {rows} shown"
    return {"note": note, "rows": out}


def _differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return ~((a == b) | (np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64))))
    return a != b


def _pick(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    safe = np.clip(indices.astype(np.int64), -values.size, values.size - 1)
    return values[safe]


def _sequence(values: np.ndarray, head: bool, tail: bool) -> str:
    text = " ".join(format_value(v.item()) for v in values)
    return ("… " if head else "") + text + (" …" if tail else "")


def _ranked(rec: Recorded, case: dict[str, Any], candidate: str, probe: str, output: str) -> np.ndarray | None:
    """The values an index output ranked: eager's own (the evidence the verdict rests on), else the graph's."""

    from ..backends.candidates import ranked_source
    from ..record.names import EAGER_RANKED

    eager = rec.row(EAGER_RANKED, probe, output)
    if eager is not None and json.loads(eager["about"] or "{}").get("kind") == "index":
        return rec.array(EAGER_RANKED, probe, output)
    source = ranked_source(case, candidate)
    return rec.array(source, probe, output) if source else None


def worst_elements(
    reference: np.ndarray, candidate: np.ndarray, ranked: np.ndarray | None = None, limit: int = WORST_ROWS
) -> list[dict[str, Any]]:
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
        row = {
            "index": list(index),
            "reference": format_value(reference[index]),
            "candidate": format_value(candidate[index]),
            "abs": format_value(float(diff[index])),
        }
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


def write_repro(
    case: dict[str, Any],
    comparisons: list[dict[str, Any]],
    rec: Recorded,
    folder: Path,
    unexpected: set[str] | None = None,
) -> Path | None:
    """Bundles in the standard ONNX test format for the case's failing comparisons, unexpected ones first.

    ``folder`` gets the worst failure of the candidates in ``unexpected`` (of any failing candidate when none
    is); every other unexpected failure that ran a different graph gets ``folder/variants/<candidate>/``.
    In each, ``model.onnx`` is the graph the failing candidate ran, ``test_data_set_0`` holds its inputs and
    the reference's outputs (the expected values), and ``outputs/<backend>/`` every backend's outputs, so
    onnxruntime's own test runner can replay it and the folder can be attached to an upstream issue.
    """
    from ..backends.candidates import case_export_name
    from ..judge.classify import severity

    failing = [c for c in comparisons if not c["passed"] and c["probe"] != "*"]
    chosen = [c for c in failing if c["candidate"] in (unexpected or set())] or failing
    if not chosen:
        return None
    exports = case.get("exports") or {}
    worst_per_graph: dict[str, dict[str, Any]] = {}
    for c in sorted(chosen, key=lambda c: -severity(c["label"])):
        worst_per_graph.setdefault(case_export_name(case, c["candidate"]), c)
    written = None
    for key, worst in worst_per_graph.items():
        target = folder if written is None else folder / "variants" / _safe(worst["candidate"])
        if _write_bundle(case, worst, exports.get(key) or {}, rec, target, folder.parent.parent) and written is None:
            written = folder
    return written


def _write_bundle(
    case: dict[str, Any], worst: dict[str, Any], export: dict[str, Any], rec: Recorded, folder: Path, run_dir: Path
) -> bool:
    from onnx import numpy_helper

    from ..record.tables import run_artifact

    candidate, probe, reference = worst["candidate"], worst["probe"], worst["reference"]
    model_path = run_artifact(run_dir, export.get("onnx_path"))
    if model_path is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(Path(model_path).read_bytes())
    data_set = folder / "test_data_set_0"
    data_set.mkdir(exist_ok=True)
    graph_inputs = export.get("graph_inputs") or rec.outputs("input", probe)
    for i, name in enumerate(graph_inputs):
        array = rec.array("input", probe, name)
        if array is not None:
            (data_set / f"input_{i}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
    outputs = rec.outputs(reference, probe)
    for i, name in enumerate(outputs):
        (data_set / f"output_{i}.pb").write_bytes(
            numpy_helper.from_array(rec.array(reference, probe, name), name).SerializeToString()
        )
    for backend in rec.order:
        if pseudo_backend(backend):  # inputs and graph evidence are not a backend's outputs
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
        "Replay: onnx_test_runner <this folder>   (or load model.onnx with onnxruntime and feed the inputs)\n"
    )
    return True


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
