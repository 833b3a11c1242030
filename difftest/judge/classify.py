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
    within,
)
from .layout import find_layout
from .ties import RankedValues, gathered_ties, index_ties

# label -> (passes?, severity for picking the worst of several comparisons)
LABELS: dict[str, tuple[bool, int]] = {
    "invalid_probe": (True, -1),  # the reference itself rejects a generated probe: not judged (see judge)
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
WRONG_VALUES = {"mismatch", "layout", "nonfinite", "shape"}  # the labels that say the values themselves are wrong


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
    # For a passing verdict beyond the fixed tolerance, the rule that accepted it: "float64 oracle", "noise floor",
    # "summation bound", "ill-conditioned", "tf32", "attention fast path" (None: within tolerance, or a failure).
    rule: str | None = None

    @property
    def passed(self) -> bool:
        return passes(self.label)


@dataclass
class Pair:
    """One output of one probe: the reference's array and a candidate's, plus the evidence around them."""

    reference: np.ndarray
    candidate: np.ndarray
    rtol: float
    atol: float
    oracle: np.ndarray | None = None  # the reference model run in float64 on the same inputs
    reference_reruns: list[np.ndarray] = field(default_factory=list)
    candidate_reruns: list[np.ndarray] = field(default_factory=list)
    ranked: RankedValues | None = None  # what an index output ranked (from the ONNX graph)
    # Sibling outputs of the same probe: name -> (reference, candidate), for gathered ties.
    siblings: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # Σ|x| per element behind an accumulated output, and the node's metadata (op, n): see ``accumulation``.
    accumulation: tuple[np.ndarray, dict] | None = None
    # The axis along which the graph leaves the order of this output unspecified (TopK with sorted=0).
    unordered_axis: int | None = None
    # Positions the case declared ignorable (padding under ``output_masks``): left out of every count.
    ignore: np.ndarray | None = None
    _measured: Metrics | None = field(default=None, repr=False)
    _bound: "tuple[_Bound | None] | None" = field(default=None, repr=False)

    def measured(self) -> Metrics | None:
        """Metrics of reference vs the candidate cast to the reference's dtype, computed once per pair."""
        if self._measured is None:
            cand = _cast_like(self.candidate, self.reference)
            if cand is None:
                return None
            self._measured = metrics(self.reference, cand, self.rtol, self.atol, self.ignore)
        return self._measured

    def bound(self) -> "_Bound | None":
        """The summation bound of the node behind an accumulated output (see ``accumulation``), computed once."""
        if self._bound is None:
            self._bound = (_accumulation_bound(self),)
        return self._bound[0]

    @property
    def elements(self) -> str:
        """How evidence names the positions it counts."""
        return "elements" if self.ignore is None else "judged elements"


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
    judged = int(pair.reference.size if pair.ignore is None else np.count_nonzero(~pair.ignore))
    zero = Metrics(count=judged, max_abs=0.0, mean_abs=0.0, max_rel=0.0, rtol=pair.rtol,
                   atol=pair.atol, ulp_max=0.0 if is_float(pair.reference) else None,
                   ulp_p50=0.0 if is_float(pair.reference) else None, ulp_p99=0.0 if is_float(pair.reference) else None,
                   tolerance_ratio=0.0)
    return Verdict("exact", f"all {judged} {pair.elements} bit-identical ({pair.reference.dtype})", zero)


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
    measured = pair.measured()
    if measured is not None and not (measured.nan_mismatch or measured.inf_mismatch):
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
    if pair.oracle is not None and pair.oracle.shape == ref.shape:
        where = nan_diff | inf_diff
        finite = np.isfinite(as_float64(pair.oracle))[where]
        parts.append(f"the float64 oracle is finite at {int(finite.sum())} of these {int(where.sum())} position(s)")
    return Verdict("nonfinite", "; ".join(parts), pair.measured())


def within_tolerance_rule(pair: Pair) -> Verdict | None:
    ref, cand = pair.reference, _cast_like(pair.candidate, pair.reference)
    if cand is None:
        return None
    m = pair.measured()
    if m.mismatched:
        return None
    ulp = f"; ULP max {m.ulp_max:g}, p99 {m.ulp_p99:g}" if m.ulp_max is not None else ""
    return Verdict("numeric", f"all {m.count} {pair.elements} within rtol={pair.rtol:g}, atol={pair.atol:g}; max |Δ| "
                              f"{format_value(m.max_abs)}{_worst_text(ref, cand, m)}; max rel {format_value(m.max_rel)}"
                              f"{ulp}{_dtype_note(pair)}", m)


def mismatch_rule(pair: Pair) -> Verdict:
    ref, cand = pair.reference, _cast_like(pair.candidate, pair.reference)
    if cand is None:
        return Verdict("mismatch", f"candidate dtype {pair.candidate.dtype} cannot be compared with {ref.dtype}")
    m = pair.measured()
    oracle = ""
    if pair.oracle is not None and pair.oracle.shape == ref.shape and is_float(ref):
        finite = np.isfinite(as_float64(pair.oracle))
        oracle = (f"; RMSE vs float64 oracle: candidate {_rmse(cand, as_float64(pair.oracle), finite):.3g}, "
                  f"reference {_rmse(ref, as_float64(pair.oracle), finite):.3g}")
    bound = pair.bound()
    summation = ""
    if bound is not None and bound.beyond:
        summation = (f"; {bound.beyond} element(s) exceed the {ref.dtype} summation bound of the "
                     f"{pair.accumulation[1].get('op')} node (γₙ·Σ|x|, n = {bound.n}) by up to {bound.used:.3g}×: "
                     "more than any summation order explains")
    return Verdict(
        "mismatch",
        f"{m.mismatched} of {m.count} {pair.elements} ({100 * m.mismatched_fraction:.3g}%) beyond rtol={pair.rtol:g}, "
        f"atol={pair.atol:g}; max |Δ| {format_value(m.max_abs)}{_worst_text(ref, cand, m)}; mean |Δ| "
        f"{format_value(m.mean_abs)}{oracle}{summation}{_dtype_note(pair)}",
        m,
    )


def reshape_layout_rule(pair: Pair) -> Verdict | None:
    ref, cand = pair.reference, pair.candidate
    if ref.shape == cand.shape and not (ref.dtype.kind == "c") != (cand.dtype.kind == "c"):
        return None
    found = find_layout(ref, cand, pair.rtol, pair.atol)
    if found is None:
        return None
    return Verdict("layout", f"{found.evidence}: the reference's {ref.size} values, shape {tuple(cand.shape)} "
                             f"{cand.dtype} vs reference {tuple(ref.shape)} {ref.dtype}")


def index_tie_rule(pair: Pair) -> Verdict | None:
    if pair.ranked is None:
        return None
    finding = index_ties(pair.reference, pair.candidate, pair.ranked, *_value_tolerance(pair))
    if finding is None:
        return None
    label = "tie_break" if finding.ties_explain else "mismatch"
    return Verdict(label, finding.evidence, pair.measured())


def unordered_rule(pair: Pair) -> Verdict | None:
    """An output whose order the graph leaves unspecified (TopK with sorted=0): compared row by row as sets."""
    ref, cand = pair.reference, pair.candidate
    if pair.unordered_axis is None or ref.shape != cand.shape or ref.ndim == 0 or ref.dtype != cand.dtype:
        return None
    axis = pair.unordered_axis % ref.ndim
    a = np.sort(np.moveaxis(ref, axis, -1), axis=-1)
    b = np.sort(np.moveaxis(cand, axis, -1), axis=-1)
    rtol, atol = _value_tolerance(pair) if is_float(ref) else (0.0, 0.0)
    if not bool(within(a, b, rtol, atol).all()):
        return None
    m = pair.measured()
    differing = int(np.count_nonzero(ref != cand))
    return Verdict("tie_break", (
        f"the graph's TopK has sorted=0, which leaves the order of its {ref.shape[axis]} results unspecified; every "
        f"row along dim {axis} holds the same elements as the reference's ({differing} of {ref.size} positions hold "
        "them in another order)"), m)


def gathered_tie_rule(pair: Pair) -> Verdict | None:
    for name, (ref_scores, cand_scores) in pair.siblings.items():
        if not is_float(ref_scores) or ref_scores.ndim < 1 or ref_scores.ndim >= pair.reference.ndim + 1:
            continue
        rtol, atol = tolerance_for(ref_scores)
        finding = gathered_ties(pair.reference, pair.candidate, ref_scores, cand_scores, name, rtol, atol)
        if finding is not None and finding.ties_explain:
            return Verdict("tie_break", finding.evidence,
                           pair.measured())
    return None


ORACLE_MULTIPLIER = 3.0
# Below this many machine epsilons of relative RMSE against float64, an error is float noise whatever the
# reference's own accuracy (a runtime accumulating a long sum in float32 while eager uses a wider scheme).
NOISE_FLOOR_EPS = 32
# The oracle rule only vouches for a candidate while the reference itself is within float noise of the
# oracle; an eager result this far from float64 is an error of its own (and blamed on eager).
REFERENCE_NOISE_EPS = 1024


def oracle_rule(pair: Pair) -> Verdict | None:
    """Beyond the fixed tolerance, but no farther from float64 than the reference itself is: numeric noise.

    The rule torch's dynamo accuracy checker uses: RMSE(candidate, fp64) <= m * RMSE(reference, fp64) + tol / 10.
    """
    if pair.oracle is None or not is_float(pair.reference) or pair.oracle.shape != pair.reference.shape:
        return None
    cand = _cast_like(pair.candidate, pair.reference)
    if cand is None:
        return None
    oracle = as_float64(pair.oracle)
    finite = np.isfinite(oracle) & np.isfinite(as_float64(pair.reference)) & np.isfinite(as_float64(cand))
    if not finite.any():
        return None
    cand_err = _rmse(cand, oracle, finite)
    ref_err = _rmse(pair.reference, oracle, finite)
    magnitude = float(np.sqrt(np.mean(np.abs(oracle[finite]) ** 2)))
    eps = float(np.finfo(pair.reference.dtype).eps) if pair.reference.dtype.kind == "f" else 2.0**-7
    tol = max(pair.atol, pair.rtol * magnitude)
    m = pair.measured()
    beyond = (f"{m.mismatched} of {m.count} {pair.elements} beyond rtol={pair.rtol:g}, atol={pair.atol:g} (max |Δ| "
              f"{format_value(m.max_abs)}), but float noise: ")
    if ref_err > max(pair.atol, REFERENCE_NOISE_EPS * eps * magnitude):
        # Eager itself is far from float64. Float32 arithmetic cannot do better on such inputs (ill-conditioned:
        # a large offset, cancellation) when the candidate is about as far: neither is wrong. One side much
        # farther than the other is a finding (blamed on that side), so the band is narrow.
        if ref_err / ORACLE_MULTIPLIER <= cand_err <= ORACLE_MULTIPLIER * ref_err:
            return Verdict("numeric", beyond + (
                f"the inputs are ill-conditioned for {pair.reference.dtype}: eager itself is RMSE {ref_err:.3g} from "
                f"the float64 oracle ({ref_err / magnitude / eps:.3g} machine epsilons of the output's RMS "
                f"{magnitude:.3g}) and the candidate about as far ({cand_err:.3g}, within {ORACLE_MULTIPLIER:g}× either "
                "way)"), m, rule="ill-conditioned")
        return None
    bound = ORACLE_MULTIPLIER * ref_err + tol / 10
    if cand_err <= bound:
        return Verdict("numeric", beyond + (
            f"RMSE vs float64 oracle {cand_err:.3g} <= {ORACLE_MULTIPLIER:g} × reference's {ref_err:.3g} + "
            f"{tol / 10:.3g}"), m, rule="float64 oracle")
    if magnitude > 0 and cand_err <= NOISE_FLOOR_EPS * eps * magnitude:
        return Verdict("numeric", beyond + (
            f"RMSE vs float64 oracle {cand_err:.3g} is {cand_err / magnitude / eps:.3g} machine epsilons of the "
            f"output's RMS {magnitude:.3g} (<= {NOISE_FLOOR_EPS}; the reference's own RMSE is {ref_err:.3g})"), m,
            rule="noise floor")
    return None


def nondeterminism_rule(pair: Pair) -> Verdict | None:
    """A gap within the backends' own run-to-run spread is not a cross-backend bug."""
    spreads = []
    for first, reruns in ((pair.reference, pair.reference_reruns), (pair.candidate, pair.candidate_reruns)):
        for again in reruns:
            if again.shape == first.shape and not bit_identical(first, again):
                spreads.append(np.abs(as_float64(first) - as_float64(again)))
    if not spreads:
        return None
    cand = _cast_like(pair.candidate, pair.reference)
    if cand is None:
        return None
    spread = float(max(np.nan_to_num(s, nan=0.0).max() for s in spreads))
    m = pair.measured()
    if m.max_abs is not None and m.max_abs <= spread + pair.atol:
        return Verdict("nondeterministic", (
            f"a backend differs from its own rerun by up to {format_value(spread)}; the cross-backend gap "
            f"(max |Δ| {format_value(m.max_abs)}, {m.mismatched} of {m.count} {pair.elements} beyond tolerance) lies "
            "within that run-to-run spread"), m)
    return None


def same_shape_layout_rule(pair: Pair) -> Verdict | None:
    ref, cand = pair.reference, pair.candidate
    if ref.shape != cand.shape:
        return None
    found = find_layout(ref, cand, *_value_tolerance(pair))
    if found is None:
        return None
    m = pair.measured()
    return Verdict("layout", f"{found.evidence}: the same values in another arrangement "
                             f"({m.mismatched} of {m.count} positions differ)", m)


@dataclass
class _Bound:
    beyond: int  # elements outside the bound
    used: float  # the largest error / bound over the elements
    n: int  # the longest reduction
    gamma: float
    unit: float
    truth: str  # what the candidate was measured against


def _accumulation_bound(pair: Pair) -> _Bound | None:
    """The candidate against the error bound of float summation for the node that produced the output:
    |candidate - exact| <= γₙ·Σ|x| elementwise, γₙ = n·u/(1 - n·u), u the unit roundoff, n the number of terms
    (Higham, Accuracy and Stability of Numerical Algorithms, §4.2). Any summation order satisfies it."""
    if pair.accumulation is None or not is_float(pair.reference) or pair.reference.dtype.kind == "c":
        return None
    from .accumulation import terms_per_element

    magnitude, meta = pair.accumulation
    ref = pair.reference
    cand = _cast_like(pair.candidate, ref)
    if cand is None or magnitude.shape != ref.shape:
        return None
    unit = float(np.finfo(ref.dtype).eps) / 2 if ref.dtype.kind == "f" else 2.0**-8
    terms = np.asarray(terms_per_element(meta, ref.shape), dtype=np.float64)
    if meta.get("op") == "ReduceMean":
        terms = terms + 1  # the division by n rounds once more
    nu = terms * unit
    if np.any(nu >= 0.5):
        return None
    gamma = nu / (1 - nu)
    if pair.oracle is not None and pair.oracle.shape == ref.shape:
        truth, truth_name, factor = as_float64(pair.oracle), "float64 oracle", 1.0
    else:
        truth, truth_name, factor = as_float64(ref), "reference", 2.0  # both sides carry rounding error
    bound = factor * gamma * np.abs(as_float64(magnitude)) + unit * np.abs(truth)
    cand64 = as_float64(cand)
    finite = np.isfinite(truth) & np.isfinite(cand64) & np.isfinite(bound)
    if not finite.any():
        return None
    error = np.abs(cand64 - truth)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(finite, np.where(bound > 0, error / bound, np.where(error > 0, np.inf, 0.0)), 0.0)
    return _Bound(int(np.count_nonzero(finite & (error > bound))), float(ratio.max()), int(terms.max()),
                  float(gamma.max()), unit, truth_name)


def accumulation_rule(pair: Pair) -> Verdict | None:
    """Beyond the fixed tolerance, but within the summation bound of the node that produced the output."""
    found = pair.bound()
    if found is None or found.beyond:
        return None
    m = pair.measured()
    op = pair.accumulation[1].get("op")
    ref, cand = pair.reference, _cast_like(pair.candidate, pair.reference)
    text = (f"{m.mismatched} of {m.count} {pair.elements} beyond rtol={pair.rtol:g}, atol={pair.atol:g} (max |Δ| "
            f"{format_value(m.max_abs)}), but every element is within the {ref.dtype} summation bound of its {op} "
            f"node: |candidate − {found.truth}| <= γₙ·Σ|x| with n = {found.n} terms"
            f"{' (its prefix length, per element)' if op == 'CumSum' else ''}, γₙ = {found.gamma:.3g} "
            f"(n·u/(1 − n·u), u = {found.unit:.3g}); the worst element uses {100 * found.used:.3g}% of its bound")
    if pair.oracle is not None and pair.oracle.shape == ref.shape:
        oracle = as_float64(pair.oracle)
        mask = np.isfinite(oracle) & np.isfinite(as_float64(ref)) & np.isfinite(as_float64(cand))
        cand_err, ref_err = _rmse(cand, oracle, mask), _rmse(ref, oracle, mask)
        if ref_err > 0 and cand_err > ref_err:
            text += (f"; accuracy: the candidate is {cand_err / ref_err:.3g}× farther from float64 than the "
                     f"reference (RMSE {cand_err:.3g} vs {ref_err:.3g})")
        elif cand_err > 0 and ref_err > cand_err:
            text += (f"; the reference is {ref_err / cand_err:.3g}× farther from float64 than the candidate "
                     f"(RMSE {ref_err:.3g} vs {cand_err:.3g})")
    return Verdict("numeric", text, m, rule="summation bound")


# Order matters: benign explanations are tried before "layout", and "mismatch" decides the rest.
RULES: list[Rule] = [
    exact_rule, reshape_layout_rule, shape_rule, dtype_rule, nonfinite_rule, within_tolerance_rule,
    unordered_rule, index_tie_rule, gathered_tie_rule, accumulation_rule, oracle_rule, nondeterminism_rule, same_shape_layout_rule,
    mismatch_rule,
]


def classify(reference: np.ndarray, candidate: np.ndarray, rtol: float | None = None, atol: float | None = None,
             **evidence) -> Verdict:
    """Label one output pair; ``evidence`` fills the other fields of :class:`Pair`. Never raises on arrays."""
    r, a = tolerance_for(reference, rtol, atol)
    pair = Pair(reference, candidate, r, a, **evidence)
    with np.errstate(all="ignore"):  # NaN, Inf and overflow are data here, not accidents
        for rule in RULES:
            verdict = rule(pair)
            if verdict is not None:
                return verdict
    raise AssertionError("mismatch_rule always decides")  # pragma: no cover


def _cast_like(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray | None:
    if candidate.dtype == reference.dtype:
        return candidate
    try:
        if is_float(reference) or is_float(candidate):
            return as_float64(candidate).astype(reference.dtype) if is_float(reference) else as_float64(candidate)
        return candidate.astype(reference.dtype)
    except (TypeError, ValueError):
        return None


def _rmse(values: np.ndarray, oracle: np.ndarray, mask: np.ndarray) -> float:
    diff = as_float64(values)[mask] - oracle[mask]
    return float(np.sqrt(np.mean(np.abs(diff) ** 2))) if diff.size else 0.0


def _value_tolerance(pair: Pair) -> tuple[float, float]:
    """Tolerance for comparing values: an integer output's zero tolerance is not meant for the values it indexes."""
    if pair.ranked is not None:
        return tolerance_for(pair.ranked.values)
    return pair.rtol, pair.atol


def _dtype_note(pair: Pair) -> str:
    if pair.candidate.dtype == pair.reference.dtype:
        return ""
    return f"; dtype also differs ({pair.candidate.dtype} vs {pair.reference.dtype})"


def _worst_text(ref: np.ndarray, cand: np.ndarray, m: Metrics) -> str:
    if m.worst_index is None or ref.size == 0:
        return ""
    index = m.worst_index
    return f" at {format_index(index)} (reference {format_value(ref[index])}, candidate {format_value(cand[index])})"
