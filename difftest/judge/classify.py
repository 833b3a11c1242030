"""Decide what kind of disagreement two recorded outputs show.

A pure function over arrays: :func:`classify` walks an ordered list of rules;
the first that recognises the pair decides the label, and every label comes
with its evidence in numbers. Stage failures (export, runtime) are decided
from the tables before any array is looked at (see ``judge``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .compare import (
    Metrics,
    as_float64,
    bit_identical,
    default_tolerance,
    format_index,
    format_value,
    is_float,
    is_integer,
    metrics,
    nonfinite_masks,
    within,
)
from . import vocabulary
from .layout import find_layout
from .ties import RankedValues, gathered_ties, index_ties

# label -> (passes?, severity for picking the worst of several comparisons), from the one table (``vocabulary``)
LABELS: dict[str, tuple[bool, int]] = {entry.name: (entry.passes, entry.severity) for entry in vocabulary.LABEL_TABLE}
WARNING_LABELS = set(vocabulary.WARNINGS)
NOT_TIED = "eager's values show these indices are not tied"  # a note the ties-ramp rule respects
WRONG_VALUES = set(vocabulary.WRONG_VALUES)  # the labels that say the values themselves are wrong


def passes(label: str) -> bool:
    return vocabulary.label(label).passes


def severity(label: str) -> int:
    return vocabulary.label(label).severity


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
    # Who is blamed is ``blame``; which rule blamed them (``vocabulary.BLAME_RULES``) and the sentence saying why
    # are data of their own, never appended to the evidence (see ``blame``).
    blame_rule: str | None = None
    blame_reason: str | None = None
    # What to do about a failure, when difftest knows (see ``next_step``); the error statistics of a failing
    # numeric comparison (``compare.error_statistics``); the mask inputs where every mismatching element is 0.
    next_step: str | None = None
    statistics: dict[str, Any] | None = None
    padding: list[str] | None = None

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
    ranked: RankedValues | None = None  # what an index output ranked, from eager's own op (the tie evidence)
    graph_ranked: RankedValues | None = None  # the same from the candidate's graph: shown, never an excuse
    # Sibling outputs of the same probe: name -> (reference, candidate), for gathered ties.
    siblings: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # For rows eager gathered by a top-k index: the source rows tied with the last score kept (see ``eager_ranked``).
    cut_rows: np.ndarray | None = None
    # Σ|x| per element behind an accumulated output, and the node's metadata (op, n): see ``accumulation``.
    accumulation: tuple[np.ndarray, dict] | None = None
    # The axis along which the model leaves the order of this output unspecified (eager's topk(sorted=False)).
    unordered_axis: int | None = None
    # Positions the case declared ignorable (padding under ``output_masks``): left out of every count.
    ignore: np.ndarray | None = None
    # The case declared its own tolerance (rtol or atol): its contract, which the gross-error check leaves alone.
    declared: bool = False
    legacy: bool = False  # recorded before eager's index evidence existed (see ``verdicts.legacy_tie_evidence``)
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


def output_tolerance(tolerances: dict[str, Any], output: str) -> tuple[float | None, float | None]:
    """(rtol, atol) a case declares for ``output`` (its ``tolerances``: per output, else for every output)."""
    per_output = (tolerances.get("per_output") or {}).get(output)
    if per_output:
        return float(per_output[0]), float(per_output[1])
    return tolerances.get("rtol"), tolerances.get("atol")


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
    zero = Metrics(
        count=judged,
        max_abs=0.0,
        mean_abs=0.0,
        max_rel=0.0,
        rtol=pair.rtol,
        atol=pair.atol,
        ulp_max=0.0 if is_float(pair.reference) else None,
        ulp_p50=0.0 if is_float(pair.reference) else None,
        ulp_p99=0.0 if is_float(pair.reference) else None,
        tolerance_ratio=0.0,
    )
    return Verdict("exact", f"all {judged} {pair.elements} bit-identical ({pair.reference.dtype})", zero)


def dtype_rule(pair: Pair) -> Verdict | None:
    ref, cand = pair.reference, pair.candidate
    if ref.dtype == cand.dtype:
        return None
    cast = _cast_like(cand, ref)
    if cast is None:
        return None
    if (is_integer(ref) or is_integer(cand)) and not (round_trips(cand, ref.dtype) and round_trips(ref, cand.dtype)):
        return None  # a value one of the dtypes cannot hold: not the same values (the value rules judge it)
    m = metrics(ref, cast, pair.rtol, pair.atol)
    if m.mismatched:
        return None  # values differ too: let the value rules judge (the note keeps the dtype)
    return Verdict(
        "dtype",
        f"dtype {cand.dtype} vs reference {ref.dtype}; every value is representable in both and they agree "
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
    within = (
        f"all {m.count} {pair.elements} within rtol={pair.rtol:g}, atol={pair.atol:g}; max |Δ| "
        f"{format_value(m.max_abs)}{_worst_text(ref, cand, m)}; max rel {format_value(m.max_rel)}{ulp}"
        f"{_dtype_note(pair)}"
    )
    gross = _hidden_by_tolerance(pair, cand)
    if gross is not None:
        return Verdict("mismatch", f"{within}; but {gross}", m)
    return Verdict("numeric", within, m)


# Within the tolerance, yet this many times farther from float64 than eager and this many machine epsilons of its
# magnitude band off: no rounding does that (approximate transcendentals err by a few ULP); a weight fault does.
GROSS_RATIO = 64.0
GROSS_EPS = 256


def _against_oracle(pair: Pair, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(oracle, reference, candidate) in float64 and where all three are finite and judged (not declared padding)."""
    oracle, ref64, cand64 = as_float64(pair.oracle), as_float64(pair.reference), as_float64(cand)
    judged = np.ones(oracle.shape, dtype=bool) if pair.ignore is None else ~pair.ignore
    return oracle, ref64, cand64, np.isfinite(oracle) & np.isfinite(ref64) & np.isfinite(cand64) & judged


def _hidden_by_tolerance(pair: Pair, cand: np.ndarray) -> str | None:
    """A sentence when a tolerance the candidate meets hides an error far beyond float noise in some magnitude
    band (judged against the float64 oracle, the independent evidence); None otherwise."""
    if (
        pair.declared
        or pair.oracle is None
        or pair.oracle.shape != pair.reference.shape
        or pair.reference.dtype.kind != "f"
    ):
        return None
    if bit_identical(pair.reference, cand):
        return None
    oracle, ref64, cand64, finite = _against_oracle(pair, cand)
    if finite.sum() < MIN_BAND:
        return None
    eps = float(np.finfo(pair.reference.dtype).eps)
    bands, names = magnitude_bands(oracle, 0.0, finite)
    for band in np.unique(bands[finite]):
        where = finite & (bands == band)
        cand_err, ref_err = _rmse(cand64[where], oracle[where], None), _rmse(ref64[where], oracle[where], None)
        magnitude = float(np.sqrt(np.mean(oracle[where] ** 2)))
        if magnitude > 0 and cand_err > GROSS_RATIO * ref_err and cand_err > GROSS_EPS * eps * magnitude:
            return (
                f"in the magnitude band |oracle| {names[int(band)]} ({int(where.sum())} elements) the candidate is "
                f"RMSE {cand_err:.3g} from the float64 oracle, {cand_err / ref_err if ref_err else float('inf'):.3g}× "
                f"eager's {ref_err:.3g} and {cand_err / magnitude / eps:.3g} machine epsilons of the band's RMS "
                f"{magnitude:.3g} (more than {GROSS_RATIO:g}× and {GROSS_EPS}): the tolerance hides an error no "
                "rounding makes"
            )
    return None


def mismatch_rule(pair: Pair) -> Verdict:
    ref, cand = pair.reference, _cast_like(pair.candidate, pair.reference)
    if cand is None:
        return Verdict("mismatch", f"candidate dtype {pair.candidate.dtype} cannot be compared with {ref.dtype}")
    m = pair.measured()
    oracle = ""
    if pair.oracle is not None and pair.oracle.shape == ref.shape and is_float(ref):
        finite = np.isfinite(as_float64(pair.oracle))
        oracle = (
            f"; RMSE vs float64 oracle: candidate {_rmse(cand, as_float64(pair.oracle), finite):.3g}, "
            f"reference {_rmse(ref, as_float64(pair.oracle), finite):.3g}"
        )
    bound = pair.bound()
    summation = ""
    if bound is not None and bound.offset and not bound.beyond:
        summation = f"; within the summation bound elementwise, but {bound.offset}"
    if bound is not None and bound.beyond:
        summation = (
            f"; {bound.beyond} element(s) exceed the error a {ref.dtype} summation makes in the "
            f"{pair.accumulation[1].get('op')} node (λ·√n·u·Σ|x| + n/2·u·|sum|, n = {bound.n}) by up to "
            f"{bound.used:.3g}×: "
            "more than a summation order explains"
        )
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
    return Verdict(
        "layout",
        f"{found.evidence}: the reference's {ref.size} values, shape {tuple(cand.shape)} "
        f"{cand.dtype} vs reference {tuple(ref.shape)} {ref.dtype}",
    )


def index_tie_rule(pair: Pair) -> Verdict | None:
    """Differing indices are tie-breaking only where the values *eager* ranked are tied. The candidate's graph
    evaluated up to its ArgMax/TopK can show where it thinks values tie, but a fault upstream makes exactly such
    ties, so that alone is never a pass."""
    if pair.ranked is None:
        if pair.graph_ranked is None:
            return None
        finding = index_ties(pair.reference, pair.candidate, pair.graph_ranked, *_value_tolerance(pair))
        if finding is None:
            return None
        if finding.ties_explain:
            return Verdict(
                "mismatch",
                (
                    f"{finding.evidence}; but those values are the candidate's own graph's, and eager's values at that "
                    "point were not recorded for this output (it is not one of eager's own ArgMax/TopK/Sort results), "
                    "so "
                    "a tie cannot be established from the reference"
                ),
                pair.measured(),
            )
        return Verdict("mismatch", finding.evidence, pair.measured())
    finding = index_ties(
        pair.reference, pair.candidate, pair.ranked, *_value_tolerance(pair), unordered=pair.unordered_axis is not None
    )
    if finding is None:
        return None
    if finding.ties_explain:
        return Verdict("tie_break", finding.evidence, pair.measured())
    # Eager's own values show an index pointing at a value that is not tied: nothing across probes overrules it.
    return Verdict("mismatch", finding.evidence, pair.measured(), notes=[NOT_TIED])


def unordered_rule(pair: Pair) -> Verdict | None:
    """An output whose order the model leaves unspecified (eager's own topk was called with sorted=False):
    compared row by row as sets. A graph's sorted=0 is no such promise: the PyTorch call decides."""
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
    return Verdict(
        "tie_break",
        (
            f"the model calls topk(sorted=False), which leaves the order of its {ref.shape[axis]} results "
            "unspecified; every "
            f"row along dim {axis} holds the same elements as the reference's ({differing} of {ref.size} positions "
            "hold "
            "them in another order)"
        ),
        m,
    )


def gathered_tie_rule(pair: Pair) -> Verdict | None:
    for name, (ref_scores, cand_scores) in pair.siblings.items():
        if not is_float(ref_scores) or ref_scores.ndim < 1 or ref_scores.ndim >= pair.reference.ndim + 1:
            continue
        rtol, atol = tolerance_for(ref_scores)
        finding = gathered_ties(
            pair.reference, pair.candidate, ref_scores, cand_scores, name, rtol, atol, pair.cut_rows, legacy=pair.legacy
        )
        if finding is not None and finding.ties_explain:
            return Verdict("tie_break", finding.evidence, pair.measured())
    return None


ORACLE_MULTIPLIER = 3.0
# Below this many machine epsilons of relative RMSE against float64, an error is float noise whatever the
# reference's own accuracy (a runtime accumulating a long sum in float32 while eager uses a wider scheme).
NOISE_FLOOR_EPS = 32
# The oracle rule only vouches for a candidate while the reference itself is within float noise of the
# oracle; an eager result this far from float64 is an error of its own (and blamed on eager).
REFERENCE_NOISE_EPS = 1024
BAND_FLOOR = 1e-30  # magnitudes below this (zeros included) form one band


MIN_BAND = 64  # elements per band at least (neighbouring decades merged), so a band's RMSE is a statistic


def magnitude_bands(oracle: np.ndarray, floor: float, judged: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """A band number per element and each band's name: decades of |oracle|, everything at or below ``floor`` (the
    absolute tolerance, where it means something) in one band, neighbouring decades merged upwards until a band
    holds MIN_BAND judged elements. Noise allowances are set per band, so the largest elements of a tensor never
    set the allowance for its small ones."""
    magnitude = np.abs(oracle)
    floor = max(floor, BAND_FLOOR)
    bottom = int(np.floor(np.log10(floor))) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        decade = np.floor(np.log10(np.maximum(magnitude, floor)))
    decade = np.where(magnitude <= floor, bottom, np.nan_to_num(decade, nan=bottom)).astype(np.int64)
    decades, counts = np.unique(decade[judged], return_counts=True)
    groups: list[list[int]] = []
    filled = 0
    for d, count in zip(decades.tolist(), counts.tolist()):
        if not groups or filled >= MIN_BAND:
            groups.append([])
            filled = 0
        groups[-1].append(d)
        filled += count
    if len(groups) > 1 and filled < MIN_BAND:
        groups[-2].extend(groups.pop())
    band = np.full(decade.shape, -1, dtype=np.int64)
    names: dict[int, str] = {}
    for number, members in enumerate(groups):
        band[np.isin(decade, members)] = number
        low = f"<= {floor:g}" if members[0] == bottom else f">= 1e{members[0]}"
        names[number] = low if members[-1] == bottom else f"{low}, < 1e{members[-1] + 1}"
    return band, names


@dataclass
class _BandFinding:
    rule: str  # "float64 oracle" | "noise floor" | "ill-conditioned"
    band: str
    count: int
    cand_err: float
    ref_err: float
    magnitude: float
    allowance: float


def robust_scale(oracle: np.ndarray) -> float:
    """The RMS of |oracle| over its lower nine tenths: the scale float noise follows in an output whose errors
    come from intermediates of that size (a prefix sum crossing zero), which its few largest elements cannot
    set (one 1e6 element among values near 1e-3 moves it nowhere)."""
    magnitude = np.abs(oracle)
    if magnitude.size == 0:
        return 0.0
    kept = magnitude[magnitude <= np.percentile(magnitude, 90)]
    return float(np.sqrt(np.mean(kept**2))) if kept.size else 0.0


def _band_verdict(
    cand: np.ndarray, ref: np.ndarray, oracle: np.ndarray, eps: float, rtol: float, atol: float, scale: float = 0.0
) -> "_BandFinding | str":
    """Is one band's error float noise? A finding, or a sentence saying why not. ``scale``: the output's robust
    scale, below which the noise floor of a band is not set (see ``robust_scale``)."""
    cand_err, ref_err = _rmse(cand, oracle, None), _rmse(ref, oracle, None)
    magnitude = float(np.sqrt(np.mean(np.abs(oracle) ** 2))) if oracle.size else 0.0
    tol = max(atol, rtol * magnitude)
    if ref_err > max(atol, REFERENCE_NOISE_EPS * eps * magnitude):
        # Eager itself is far from float64. Float arithmetic cannot do better on such inputs (ill-conditioned:
        # a large offset, cancellation) when the candidate is about as far: neither is wrong. One side much
        # farther than the other is a finding (blamed on that side), so the band is narrow.
        if ref_err / ORACLE_MULTIPLIER <= cand_err <= ORACLE_MULTIPLIER * ref_err:
            return _BandFinding("ill-conditioned", "", cand.size, cand_err, ref_err, magnitude, ref_err)
        return (
            f"eager is itself RMSE {ref_err:.3g} from float64 there and the candidate {cand_err:.3g}, not "
            f"within {ORACLE_MULTIPLIER:g}× either way"
        )
    bound = ORACLE_MULTIPLIER * ref_err + tol / 10
    if cand_err <= bound:
        return _BandFinding("float64 oracle", "", cand.size, cand_err, ref_err, magnitude, bound)
    floor = max(magnitude, scale)
    if floor > 0 and cand_err <= NOISE_FLOOR_EPS * eps * floor:
        return _BandFinding("noise floor", "", cand.size, cand_err, ref_err, floor, NOISE_FLOOR_EPS * eps * floor)
    return (
        f"RMSE vs float64 {cand_err:.3g} > {ORACLE_MULTIPLIER:g} × eager's {ref_err:.3g} + {tol / 10:.3g}, and "
        f"{cand_err / magnitude / eps if magnitude else float('inf'):.3g} machine epsilons of the band's RMS "
        f"{magnitude:.3g} (more than {NOISE_FLOOR_EPS})"
    )


def oracle_rule(pair: Pair) -> Verdict | None:
    """Beyond the fixed tolerance, but no farther from float64 than the reference itself is: numeric noise.

    The rule torch's dynamo accuracy checker uses, RMSE(candidate, fp64) <= m * RMSE(reference, fp64) + tol / 10,
    applied per magnitude band (decades of |oracle|) to every band that holds an element beyond the tolerance:
    allowances follow each element's own magnitude, never the largest elements of the tensor.
    """
    if pair.oracle is None or not is_float(pair.reference) or pair.oracle.shape != pair.reference.shape:
        return None
    cand = _cast_like(pair.candidate, pair.reference)
    if cand is None:
        return None
    oracle, ref64, cand64, finite = _against_oracle(pair, cand)
    if not finite.any():
        return None
    if oracle.dtype.kind == "c":
        oracle, ref64, cand64 = (np.abs(a) for a in (oracle, ref64, cand64))  # judged on magnitudes
    eps = float(np.finfo(pair.reference.dtype).eps) if pair.reference.dtype.kind == "f" else 2.0**-7
    beyond_tol = finite & ~within(pair.reference, cand, pair.rtol, pair.atol)
    bands, names = magnitude_bands(oracle, pair.atol, finite)
    scale = robust_scale(oracle[finite])
    found: list[_BandFinding] = []
    for band in np.unique(bands[beyond_tol]):
        where = finite & (bands == band)
        finding = _band_verdict(cand64[where], ref64[where], oracle[where], eps, pair.rtol, pair.atol, scale)
        if isinstance(finding, str):
            return None  # the mismatch rule reports; this band is beyond float noise
        finding.band = names[int(band)]
        found.append(finding)
    if not found:
        return None
    m = pair.measured()
    rule = next((r for r in ("ill-conditioned", "noise floor", "float64 oracle") if any(f.rule == r for f in found)))
    worst = max(found, key=lambda f: f.cand_err / f.allowance if f.allowance else 0.0)
    beyond = (
        f"{m.mismatched} of {m.count} {pair.elements} beyond rtol={pair.rtol:g}, atol={pair.atol:g} (max |Δ| "
        f"{format_value(m.max_abs)}), but float noise in each magnitude band that holds them "
        f"({len(found)} band{'s' if len(found) != 1 else ''}); the tightest, |oracle| {worst.band} "
        f"({worst.count} elements): "
    )
    if worst.rule == "ill-conditioned":
        text = (
            f"the inputs are ill-conditioned for {pair.reference.dtype}: eager itself is RMSE {worst.ref_err:.3g} "
            f"from the float64 oracle ({worst.ref_err / worst.magnitude / eps if worst.magnitude else 0:.3g} "
            f"machine epsilons of the band's RMS {worst.magnitude:.3g}) and the candidate about as far "
            f"({worst.cand_err:.3g}, within {ORACLE_MULTIPLIER:g}× either way)"
        )
    elif worst.rule == "noise floor":
        text = (
            f"RMSE vs float64 oracle {worst.cand_err:.3g} is {worst.cand_err / worst.magnitude / eps:.3g} machine "
            f"epsilons of the band's scale {worst.magnitude:.3g} (its RMS, or the output's lower nine tenths where "
            f"larger) (<= {NOISE_FLOOR_EPS}; eager's own RMSE is "
            f"{worst.ref_err:.3g})"
        )
    else:
        text = (
            f"RMSE vs float64 oracle {worst.cand_err:.3g} <= {ORACLE_MULTIPLIER:g} × eager's {worst.ref_err:.3g} "
            f"+ tolerance/10 ({worst.allowance:.3g} in all)"
        )
    return Verdict("numeric", beyond + text, m, rule=rule)


def nondeterminism_rule(pair: Pair) -> Verdict | None:
    """A gap within the reference's own run-to-run spread is not a cross-backend bug. Only the reference's spread
    counts: a candidate's own spread is what a fault that varies (uninitialised memory, a race, noise added on
    every run) produces, so it never excuses that candidate (its reruns are judged one by one instead, see
    ``verdicts.judge_reruns``)."""
    spreads = [
        np.abs(as_float64(pair.reference) - as_float64(again))
        for again in pair.reference_reruns
        if again.shape == pair.reference.shape and not bit_identical(pair.reference, again)
    ]
    if not spreads:
        return None
    cand = _cast_like(pair.candidate, pair.reference)
    if cand is None:
        return None
    spread = float(max(np.nan_to_num(s, nan=0.0).max() for s in spreads))
    m = pair.measured()
    if m.max_abs is not None and m.max_abs <= spread + pair.atol:
        return Verdict(
            "nondeterministic",
            (
                f"the reference differs from its own rerun by up to {format_value(spread)}; the cross-backend gap "
                f"(max |Δ| {format_value(m.max_abs)}, {m.mismatched} of {m.count} {pair.elements} beyond tolerance) "
                "lies "
                "within that run-to-run spread"
            ),
            m,
        )
    return None


def same_shape_layout_rule(pair: Pair) -> Verdict | None:
    ref, cand = pair.reference, pair.candidate
    if ref.shape != cand.shape:
        return None
    found = find_layout(ref, cand, *_value_tolerance(pair))
    if found is None:
        return None
    m = pair.measured()
    return Verdict(
        "layout",
        f"{found.evidence}: the same values in another arrangement ({m.mismatched} of {m.count} positions differ)",
        m,
    )


@dataclass
class _Bound:
    beyond: int  # elements outside the bound
    used: float  # the largest error / bound over the elements
    n: int  # the longest reduction
    gamma: float
    unit: float
    truth: str  # what the candidate was measured against
    offset: str | None = None  # a mean error no summation order explains (see ``_systematic_offset``)


# The probabilistic summation bound's λ: |error| <= λ·√n·u·Σ|x| (Higham and Mary, "A new approach to probabilistic
# rounding error analysis", SIAM J. Sci. Comput. 2019), plus the drift n/2·u·|sum| of same-sign partial sums. The
# worst case, γₙ·Σ|x| with γₙ = n·u/(1 - n·u), is √n/λ times wider on random-sign terms (a dot product, a Linear):
# at n = 4096 it accepts every weight of a Linear 0.1% too large.
SUMMATION_LAMBDA = 3.0


def _accumulation_bound(pair: Pair) -> _Bound | None:
    """The candidate against the error a float summation actually makes for the node that produced the output:
    |candidate - exact| <= λ·√n·u·Σ|x| + u·|exact| elementwise, u the unit roundoff, n the number of terms. Rounding
    errors of a reordered sum behave like independent mean-zero terms, so the error grows with √n (the rigorous
    worst case, n·u·Σ|x|, is never reached in practice and would excuse real weight faults in long reductions)."""
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
    if np.any(terms * unit >= 0.5):
        return None
    gamma = SUMMATION_LAMBDA * np.sqrt(terms) * unit
    if pair.oracle is not None and pair.oracle.shape == ref.shape:
        truth, truth_name, factor = as_float64(pair.oracle), "float64 oracle", 1.0
    else:
        truth, truth_name, factor = as_float64(ref), "reference", 2.0  # both sides carry rounding error
    # The random part of the rounding errors (√n-scale on Σ|x|) plus their bias when the partial sums grow one
    # way (same-sign terms: sequential float summation then drifts by up to ~n/2·u of the result). The drift is
    # weighted by how same-signed the terms are (|sum| / Σ|x|): partial sums of random-sign terms do not grow.
    with np.errstate(divide="ignore", invalid="ignore"):
        same_sign = np.clip(np.nan_to_num(np.abs(truth) / np.abs(as_float64(magnitude)), nan=0.0, posinf=1.0), 0, 1)
    drift = terms / 2 * unit * np.abs(truth) * same_sign
    bound = factor * (gamma * np.abs(as_float64(magnitude)) + drift) + unit * np.abs(truth)
    cand64 = as_float64(cand)
    finite = np.isfinite(truth) & np.isfinite(cand64) & np.isfinite(bound)
    if not finite.any():
        return None
    error = np.abs(cand64 - truth)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(finite, np.where(bound > 0, error / bound, np.where(error > 0, np.inf, 0.0)), 0.0)
    found = _Bound(
        int(np.count_nonzero(finite & (error > bound))),
        float(ratio.max()),
        int(terms.max()),
        float(gamma.max()),
        unit,
        truth_name,
    )
    found.offset = _systematic_offset(cand64 - truth, finite, drift + unit * np.abs(truth), truth_name)
    return found


BIAS_SIGMAS = 4.0  # how many standard errors a mean rounding error may stray from the drift it allows


def _systematic_offset(signed: np.ndarray, finite: np.ndarray, drift: np.ndarray, truth: str) -> str | None:
    """Rounding errors of a reordered sum average out, except for the drift of same-sign partial sums: a mean
    signed error beyond both (every element moved one way: an offset, a scaled weight) is no summation order.
    A sentence saying so, or None."""
    if np.ndim(drift) == 0:
        drift = np.full(signed.shape, float(drift))
    errors, allowed = signed[finite], np.broadcast_to(drift, signed.shape)[finite]
    if errors.size < 16:
        return None
    mean = float(errors.mean())
    limit = BIAS_SIGMAS * float(errors.std()) / np.sqrt(errors.size) + float(allowed.mean())
    if abs(mean) <= limit:
        return None
    return (
        f"the candidate's errors against the {truth} average {mean:.3g} over {errors.size} elements, "
        f"beyond the {limit:.3g} that rounding ({BIAS_SIGMAS:g} standard errors) and same-sign drift allow: a "
        "systematic offset, not a summation order"
    )


def accumulation_rule(pair: Pair) -> Verdict | None:
    """Beyond the fixed tolerance, but within the summation bound of the node that produced the output."""
    found = pair.bound()
    if found is None or found.beyond or found.offset:
        return None
    m = pair.measured()
    op = pair.accumulation[1].get("op")
    ref, cand = pair.reference, _cast_like(pair.candidate, pair.reference)
    text = (
        f"{m.mismatched} of {m.count} {pair.elements} beyond rtol={pair.rtol:g}, atol={pair.atol:g} (max |Δ| "
        f"{format_value(m.max_abs)}), but every element is within the error a {ref.dtype} summation makes in its "
        f"{op} node: |candidate − {found.truth}| <= λ·√n·u·Σ|x| + n/2·u·|sum| with n = {found.n} terms"
        f"{' (its prefix length, per element)' if op == 'CumSum' else ''}, λ·√n·u = {found.gamma:.3g} "
        f"(λ = {SUMMATION_LAMBDA:g}, u = {found.unit:.3g}); the worst element uses {100 * found.used:.3g}% of it"
    )
    if pair.oracle is not None and pair.oracle.shape == ref.shape:
        oracle = as_float64(pair.oracle)
        mask = np.isfinite(oracle) & np.isfinite(as_float64(ref)) & np.isfinite(as_float64(cand))
        cand_err, ref_err = _rmse(cand, oracle, mask), _rmse(ref, oracle, mask)
        if ref_err > 0 and cand_err > ref_err:
            text += (
                f"; accuracy: the candidate is {cand_err / ref_err:.3g}× farther from float64 than the "
                f"reference (RMSE {cand_err:.3g} vs {ref_err:.3g})"
            )
        elif cand_err > 0 and ref_err > cand_err:
            text += (
                f"; the reference is {ref_err / cand_err:.3g}× farther from float64 than the candidate "
                f"(RMSE {ref_err:.3g} vs {cand_err:.3g})"
            )
    return Verdict("numeric", text, m, rule="summation bound")


# Order matters: benign explanations are tried before "layout", and "mismatch" decides the rest.
RULES: list[Rule] = [
    exact_rule,
    reshape_layout_rule,
    shape_rule,
    dtype_rule,
    nonfinite_rule,
    within_tolerance_rule,
    unordered_rule,
    index_tie_rule,
    gathered_tie_rule,
    accumulation_rule,
    oracle_rule,
    nondeterminism_rule,
    same_shape_layout_rule,
    mismatch_rule,
]


def classify(
    reference: np.ndarray, candidate: np.ndarray, rtol: float | None = None, atol: float | None = None, **evidence
) -> Verdict:
    """Label one output pair; ``evidence`` fills the other fields of :class:`Pair`. Never raises on arrays."""
    r, a = tolerance_for(reference, rtol, atol)
    scale = None
    if atol is None:
        with np.errstate(all="ignore"):
            scale = vacuous_atol(reference, evidence.get("oracle"), a, evidence.get("ignore"))
        if scale is not None:
            a = float(np.finfo(reference.dtype).tiny) if reference.dtype.kind == "f" else 0.0
    pair = Pair(reference, candidate, r, a, declared=rtol is not None or atol is not None, **evidence)
    with np.errstate(all="ignore"):  # NaN, Inf and overflow are data here, not accidents
        for rule in RULES:
            verdict = rule(pair)
            if verdict is not None:
                if scale is not None and verdict.label != "exact":
                    verdict.evidence += (
                        f" (the default atol {tolerance_for(reference)[1]:g} dwarfs this output, whose "
                        f"largest |value| is {scale:.3g}: judged relative to each element instead)"
                    )
                return verdict
    raise AssertionError("mismatch_rule always decides")  # pragma: no cover


def vacuous_atol(
    reference: np.ndarray, oracle: np.ndarray | None, atol: float, ignore: np.ndarray | None = None
) -> float | None:
    """The output's largest |value| when every judged value (the reference's, and the float64 oracle's where it
    ran) is below the absolute tolerance, so that atol alone would pass any answer (rates of 1e-9, probabilities
    of rare events); None when atol means something here. An all-zero output has no scale to be relative to."""
    if atol <= 0 or not is_float(reference) or reference.dtype.kind == "c" or reference.size == 0:
        return None
    values = [as_float64(reference)]
    if oracle is not None and oracle.shape == reference.shape and is_float(oracle):
        values.append(as_float64(oracle))
    largest = 0.0
    for v in values:
        v = np.abs(v if ignore is None else v[~ignore])
        v = v[np.isfinite(v)]
        if v.size == 0:
            return None
        largest = max(largest, float(v.max()))
    return largest if 0 < largest < atol else None


def _cast_like(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray | None:
    """The candidate in the reference's dtype, for comparing values, when that cast keeps its values; otherwise
    the candidate in a dtype the comparison handles exactly (integers stay integers, so 259 never becomes an
    int8 3, nor 7 a True)."""
    if candidate.dtype == reference.dtype:
        return candidate
    try:
        if is_float(reference) or is_float(candidate):
            return as_float64(candidate).astype(reference.dtype) if is_float(reference) else as_float64(candidate)
        cast = candidate.astype(reference.dtype)
        return cast if round_trips(candidate, reference.dtype) else candidate
    except (TypeError, ValueError):
        return None


def round_trips(values: np.ndarray, dtype: np.dtype) -> bool:
    """Every value survives a cast to ``dtype`` and back (no wrap-around, truncation or rounding), NaN included."""
    with np.errstate(all="ignore"):
        try:
            back = values.astype(dtype).astype(values.dtype)
        except (TypeError, ValueError, OverflowError):
            return False
        if is_float(values):
            return bool(np.all((back == values) | (np.isnan(as_float64(back)) & np.isnan(as_float64(values)))))
        return bool(np.array_equal(back, values))


def _rmse(values: np.ndarray, oracle: np.ndarray, mask: np.ndarray | None) -> float:
    diff = as_float64(values) - oracle if mask is None else as_float64(values)[mask] - oracle[mask]
    return float(np.sqrt(np.mean(np.abs(diff) ** 2))) if diff.size else 0.0


def _value_tolerance(pair: Pair) -> tuple[float, float]:
    """Tolerance for comparing values: an integer output's zero tolerance is not meant for the values it indexes
    (ranked values whose scale the default atol dwarfs are compared relative to their magnitude)."""
    ranked = pair.ranked if pair.ranked is not None else pair.graph_ranked
    if ranked is not None:
        rtol, atol = tolerance_for(ranked.values)
        with np.errstate(all="ignore"):
            if vacuous_atol(ranked.values, None, atol) is not None:
                atol = 0.0
        return rtol, atol
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
