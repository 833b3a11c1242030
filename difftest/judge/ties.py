"""Value-aware tie-breaking checks.

Differing indices are benign only where the values they point at are equal:
``index_ties`` checks argmax/top-k indices against the values the ONNX node
ranked (evaluated from the graph); ``gathered_ties`` checks outputs gathered by
tied indices (boxes ordered by equal scores) as sets within groups of equal scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compare import format_index, format_value, within


@dataclass
class RankedValues:
    """The data input of the ArgMax/ArgMin/TopK node that produced an index output."""

    values: np.ndarray
    op: str
    axis: int
    keepdims: bool = True
    # Who computed the values: "eager" (the reference's own ArgMax/TopK input, see ``worker.eager_ranked``) or
    # "graph" (the candidate's graph evaluated up to the node: the graph under test, so never evidence of a tie).
    source: str = "graph"


@dataclass
class TieFinding:
    ties_explain: bool
    evidence: str


def index_ties(
    reference: np.ndarray,
    candidate: np.ndarray,
    ranked: RankedValues,
    rtol: float,
    atol: float,
    unordered: bool = False,
) -> TieFinding | None:
    """Do the differing indices point at equal values? None when the check does not apply. ``unordered``: the
    model left the order of the results unspecified (``topk(sorted=False)``), so each row's picked values are
    compared as a multiset."""
    if reference.shape != candidate.shape or reference.dtype.kind not in "iu" or candidate.dtype.kind not in "iu":
        return None
    values = ranked.values.astype(np.float64)
    axis = ranked.axis % values.ndim if values.ndim else 0
    ref_idx, cand_idx = reference, candidate
    if ranked.op in ("ArgMax", "ArgMin") and not ranked.keepdims:
        ref_idx, cand_idx = np.expand_dims(ref_idx, axis), np.expand_dims(cand_idx, axis)
    if ref_idx.ndim != values.ndim:
        return None
    size = values.shape[axis]
    if ((ref_idx < 0) | (ref_idx >= size) | (cand_idx < 0) | (cand_idx >= size)).any():
        return TieFinding(False, f"indices out of range for the ranked axis of size {size}")
    ref_values = np.take_along_axis(values, ref_idx.astype(np.int64), axis)
    cand_values = np.take_along_axis(values, cand_idx.astype(np.int64), axis)
    if unordered:
        ref_values, cand_values = np.sort(ref_values, axis=axis), np.sort(cand_values, axis=axis)
    differs = ref_idx != cand_idx
    n = int(differs.sum())
    equal = np.abs(ref_values - cand_values) <= atol + rtol * np.abs(ref_values)
    bad = ~equal if unordered else differs & ~equal
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        return TieFinding(
            False,
            (
                f"{ranked.op} index differs at {n} position(s), {int(bad.sum())} of them not tied: at "
                f"{format_index(first)} reference picks {int(ref_idx[first])} (value "
                f"{format_value(ref_values[first])}), "
                f"candidate picks {int(cand_idx[first])} (value {format_value(cand_values[first])})"
            ),
        )
    first = tuple(int(i) for i in np.argwhere(differs)[0])
    if unordered:
        return TieFinding(
            True,
            (
                f"{ranked.op} index differs at {n} position(s), but the model asked for unsorted results "
                f"(topk(sorted=False)) and every row picks the same multiset of values ({_source(ranked)})"
            ),
        )
    return TieFinding(
        True,
        (
            f"{ranked.op} index differs at {n} position(s), all on tied values: at {format_index(first)} "
            f"reference picks {int(ref_idx[first])}, candidate {int(cand_idx[first])}; "
            f"both values {format_value(ref_values[first])} ({_source(ranked)})"
        ),
    )


def _source(ranked: RankedValues) -> str:
    if ranked.source == "eager":
        return f"the values eager's own {ranked.op} ranked"
    if ranked.source != "graph":
        return f"values from the {ranked.source}"
    return f"values from the graph's {ranked.op} input"


def gathered_ties(
    reference: np.ndarray,
    candidate: np.ndarray,
    ref_scores: np.ndarray,
    cand_scores: np.ndarray,
    score_name: str,
    rtol: float,
    atol: float,
    cut_rows: np.ndarray | None = None,
    legacy: bool = False,
) -> TieFinding | None:
    """Rows that differ only in order within groups of equal scores (the scores themselves agreeing)."""
    k = ref_scores.size
    if (
        k < 2
        or reference.shape != candidate.shape
        or ref_scores.shape != cand_scores.shape
        or reference.shape[: ref_scores.ndim] != ref_scores.shape
    ):
        return None
    scores = ref_scores.astype(np.float64).reshape(-1)
    if not np.allclose(scores, cand_scores.astype(np.float64).reshape(-1), rtol=rtol, atol=atol, equal_nan=True):
        return None
    ref_rows = reference.reshape(k, -1)
    cand_rows = candidate.reshape(k, -1)
    differing = ~np.all(within(ref_rows, cand_rows, rtol, atol), axis=1)
    if not differing.any():
        return None
    groups = np.unique(scores[differing])
    sorted_scores = bool(np.all(np.diff(scores) <= 0) or np.all(np.diff(scores) >= 0))
    cut = None
    for score in groups:
        # Every tied group holds the same rows on both sides (as a multiset): the order among equal scores is
        # free, which rows there are is not.
        members = np.flatnonzero(scores == score)
        if len(members) > 1 and _same_rows(ref_rows[members], cand_rows[members], rtol, atol):
            continue
        # The last group may continue past the top-k cut, where which of several equal-scored rows are kept is
        # arbitrary; but only rows eager itself scored there may stand in (eager's source rows, never the
        # candidate's word).
        if (
            sorted_scores
            and score == scores[-1]
            and cut_rows is not None
            and _rows_among(cand_rows[members], cut_rows.reshape(len(cut_rows), -1), rtol, atol)
        ):
            cut = score
            continue
        if sorted_scores and score == scores[-1] and legacy:  # a run recorded before eager's source rows: as then
            cut = score
            continue
        return TieFinding(
            False,
            f"rows differ at {int(differing.sum())} position(s) and are not a reordering "
            f"among equal {score_name} values (group {format_value(score)})",
        )
    counts = ", ".join(f"{format_value(s)} ×{int((scores == s).sum())}" for s in groups)
    note = ""
    if cut is not None and cut_rows is not None:
        note = (
            f"; the last group ({score_name} {format_value(cut)}) sits at the top-k cut, and each of its rows is "
            f"one of the {len(cut_rows)} source rows eager scored {format_value(cut)}"
        )
    elif cut is not None:
        note = (
            f"; the last group ({score_name} {format_value(cut)}) sits at the top-k cut and is not required to "
            "match: this run was recorded before difftest kept the rows eager scored there (rerun to check them)"
        )
    return TieFinding(
        True,
        (
            f"{int(differing.sum())} of {k} rows differ, but only within groups of tied {score_name} ({counts}), each "
            f"holding the same rows; order among equal scores is undefined, so compared as sets{note}"
        ),
    )


def _rows_among(rows: np.ndarray, allowed: np.ndarray, rtol: float, atol: float) -> bool:
    """Every row is one of ``allowed`` (within tolerance), none used more often than ``allowed`` holds it."""
    if rows.shape[1:] != allowed.shape[1:]:
        return False
    free = list(range(len(allowed)))
    for row in rows:
        match = next((i for i in free if bool(within(allowed[i], row, rtol, atol).all())), None)
        if match is None:
            return False
        free.remove(match)
    return True


def _same_rows(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    order_a = np.lexsort(a.astype(np.float64).T[::-1])
    order_b = np.lexsort(b.astype(np.float64).T[::-1])
    return bool(within(a[order_a], b[order_b], rtol, atol).all())
