"""Decide what kind of disagreement two recorded outputs show.

A pure function over arrays: :func:`classify` walks an ordered list of rules;
the first that recognises the pair decides the label, and every label comes
with its evidence in numbers. Stage failures (export, runtime) are decided
from the tables before any array is looked at (see ``judge``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .compare import (
    Metrics,
    as_float64,
    bit_identical,
    default_tolerance,
    format_index,
    format_value,
    is_float,
    metrics,
    nonfinite_masks,
)

# label -> (passes?, severity for picking the worst of several comparisons)
LABELS: dict[str, tuple[bool, int]] = {
    "exact": (True, 0),
    "numeric": (True, 1),
    "tie_break": (True, 2),
    "skipped": (True, 3),
    "dtype": (True, 4),
    "nondeterministic": (True, 5),
    "layout": (False, 10),
    "shape": (False, 11),
    "nonfinite": (False, 12),
    "mismatch": (False, 13),
    "frozen_input": (False, 14),
    "shape_specialized": (False, 15),
    "runtime_error": (False, 16),
    "export_error": (False, 17),
    "timeout": (False, 18),
    "crash": (False, 19),
}
WARNING_LABELS = {"dtype", "nondeterministic"}


def passes(label: str) -> bool:
    return LABELS[label][0]


def severity(label: str) -> int:
    return LABELS[label][1]


@dataclass
class Verdict:
    label: str
    evidence: str
    metrics: Metrics | None = None
    blame: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return passes(self.label)


@dataclass
class Pair:
    """One output of one probe: the reference's array and a candidate's."""

    reference: np.ndarray
    candidate: np.ndarray
    rtol: float
    atol: float


Rule = Callable[[Pair], "Verdict | None"]


def tolerance_for(reference: np.ndarray, rtol: float | None = None, atol: float | None = None) -> tuple[float, float]:
    default_rtol, default_atol = default_tolerance(reference.dtype)
    return (default_rtol if rtol is None else rtol, default_atol if atol is None else atol)


def shape_rule(pair: Pair) -> Verdict | None:
    if pair.reference.shape == pair.candidate.shape:
        return None
    return Verdict(
        "shape",
        f"shape {tuple(pair.candidate.shape)} vs reference {tuple(pair.reference.shape)} "
        f"({pair.candidate.size} vs {pair.reference.size} elements)",
    )


def exact_rule(pair: Pair) -> Verdict | None:
    if not bit_identical(pair.reference, pair.candidate):
        return None
    return Verdict("exact", f"all {pair.reference.size} elements bit-identical ({pair.reference.dtype})",
                   metrics(pair.reference, pair.candidate, pair.rtol, pair.atol))


def dtype_rule(pair: Pair) -> Verdict | None:
    ref, cand = pair.reference, pair.candidate
    if ref.dtype == cand.dtype:
        return None
    cast = _cast_like(cand, ref)
    if cast is None:
        return None
    m = metrics(ref, cast, pair.rtol, pair.atol)
    if m.mismatched:
        return None  # values differ too: let the value rules judge (the note keeps the dtype)
    return Verdict(
        "dtype",
        f"dtype {cand.dtype} vs reference {ref.dtype}; values agree after casting to {ref.dtype} "
        f"(max |Δ| {format_value(m.max_abs)})",
        m,
    )


def nonfinite_rule(pair: Pair) -> Verdict | None:
    ref, cand = pair.reference, _cast_like(pair.candidate, pair.reference)
    if cand is None or not (is_float(ref) or is_float(cand)):
        return None
    ref_nan, ref_inf = nonfinite_masks(ref)
    cand_nan, cand_inf = nonfinite_masks(cand)
    nan_diff = ref_nan != cand_nan
    inf_diff = (ref_inf != cand_inf) & ~ref_nan & ~cand_nan
    if not (nan_diff.any() or inf_diff.any()):
        return None
    parts = []
    if nan_diff.any():
        first = tuple(int(i) for i in np.argwhere(nan_diff)[0])
        parts.append(
            f"NaN at {int(nan_diff.sum())} position(s) in only one side "
            f"(reference {int(ref_nan.sum())} NaN, candidate {int(cand_nan.sum())}); first at {format_index(first)}: "
            f"reference {format_value(ref[first])}, candidate {format_value(cand[first])}"
        )
    if inf_diff.any():
        first = tuple(int(i) for i in np.argwhere(inf_diff)[0])
        parts.append(
            f"±Inf differs at {int(inf_diff.sum())} position(s); first at {format_index(first)}: "
            f"reference {format_value(ref[first])}, candidate {format_value(cand[first])}"
        )
    return Verdict("nonfinite", "; ".join(parts), metrics(ref, cand, pair.rtol, pair.atol))


def tolerance_rule(pair: Pair) -> Verdict | None:
    ref, cand = pair.reference, _cast_like(pair.candidate, pair.reference)
    if cand is None:
        return Verdict("mismatch", f"candidate dtype {pair.candidate.dtype} cannot be compared with {ref.dtype}")
    m = metrics(ref, cand, pair.rtol, pair.atol)
    tol = f"rtol={pair.rtol:g}, atol={pair.atol:g}"
    dtype_note = (
        f"; dtype also differs ({pair.candidate.dtype} vs {ref.dtype})" if pair.candidate.dtype != ref.dtype else ""
    )
    worst = _worst_text(ref, cand, m)
    if m.mismatched == 0:
        ulp = f"; ULP max {m.ulp_max:g}, p99 {m.ulp_p99:g}" if m.ulp_max is not None else ""
        return Verdict("numeric", f"all {m.count} elements within {tol}; max |Δ| {format_value(m.max_abs)}{worst}; "
                                  f"max rel {format_value(m.max_rel)}{ulp}{dtype_note}", m)
    return Verdict(
        "mismatch",
        f"{m.mismatched} of {m.count} elements ({100 * m.mismatched_fraction:.3g}%) beyond {tol}; "
        f"max |Δ| {format_value(m.max_abs)}{worst}; mean |Δ| {format_value(m.mean_abs)}{dtype_note}",
        m,
    )


RULES: list[Rule] = [shape_rule, exact_rule, dtype_rule, nonfinite_rule, tolerance_rule]


def classify(reference: np.ndarray, candidate: np.ndarray, rtol: float | None = None, atol: float | None = None) -> Verdict:
    """Label one output pair; never raises on well-formed arrays."""
    r, a = tolerance_for(reference, rtol, atol)
    pair = Pair(reference, candidate, r, a)
    for rule in RULES:
        verdict = rule(pair)
        if verdict is not None:
            return verdict
    raise AssertionError("tolerance_rule always decides")  # pragma: no cover


def _cast_like(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray | None:
    if candidate.dtype == reference.dtype:
        return candidate
    try:
        if is_float(reference) or is_float(candidate):
            return as_float64(candidate).astype(reference.dtype) if is_float(reference) else as_float64(candidate)
        return candidate.astype(reference.dtype)
    except (TypeError, ValueError):
        return None


def _worst_text(ref: np.ndarray, cand: np.ndarray, m: Metrics) -> str:
    if m.worst_index is None or ref.size == 0:
        return ""
    index = m.worst_index
    return f" at {format_index(index)} (reference {format_value(ref[index])}, candidate {format_value(cand[index])})"
