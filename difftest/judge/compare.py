"""Numbers between two arrays: errors, ULP distances, tolerance masks. Pure numpy, vectorised."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# torch.testing.assert_close's defaults, by the reference's dtype.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float16": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
    "complex64": (1.3e-6, 1e-5),
    "complex128": (1e-7, 1e-7),
}


def default_tolerance(dtype: np.dtype | str) -> tuple[float, float]:
    """(rtol, atol) for a dtype: assert_close's table, exact for integers and booleans."""
    return DEFAULT_TOLERANCES.get(str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype, (0.0, 0.0))


def is_float(array: np.ndarray) -> bool:
    return array.dtype.kind in "fc" or str(array.dtype) == "bfloat16"


def is_integer(array: np.ndarray) -> bool:
    """Integers and booleans: compared as integers, exactly (never through float64, which merges values past 2^53)."""
    return array.dtype.kind in "iub"


def as_float64(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "c":
        return array.astype(np.complex128)
    return array.astype(np.float64)


def within(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Elementwise agreement: |a - b| <= atol + rtol·|a| (``a`` the reference), equal values (infinities
    included), and NaN against NaN. Two integer arrays agree where their values are equal as integers (a tolerance
    under 1 allows nothing else)."""
    if is_integer(a) and is_integer(b):
        return _integers_within(a, b, rtol, atol)
    a64, b64 = as_float64(a), as_float64(b)
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.abs(a64 - b64) <= atol + rtol * np.abs(a64)) | (a64 == b64) | (np.isnan(a64) & np.isnan(b64))


def _integers_within(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    equal = np.equal(a, b)  # exact across integer dtypes (int64 against uint64 included)
    if rtol == 0 and atol == 0:
        return equal
    with np.errstate(invalid="ignore", over="ignore"):
        a64 = a.astype(np.float64)
        allowed = atol + rtol * np.abs(a64)
        # past 2^53 float64 rounds the difference, but an allowance of 1 or more is a tolerance of whole units
        return equal | ((np.abs(a64 - b.astype(np.float64)) <= allowed) & (allowed >= 1))


def bit_identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaN payloads included); a memcmp, no copies of contiguous arrays."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return memoryview(a.reshape(-1).view(np.uint8)) == memoryview(b.reshape(-1).view(np.uint8))


@dataclass
class Metrics:
    """Errors of ``candidate`` against ``reference`` (same shape), finite positions only."""

    count: int
    max_abs: float | None = None
    mean_abs: float | None = None
    max_rel: float | None = None
    mismatched: int = 0
    worst_index: tuple[int, ...] | None = None
    ulp_max: float | None = None
    ulp_p50: float | None = None
    ulp_p99: float | None = None
    nan_mismatch: int = 0
    inf_mismatch: int = 0
    rtol: float = 0.0
    atol: float = 0.0
    tolerance_ratio: float | None = None  # max over elements of |Δ| / (atol + rtol·|reference|): > 1 fails
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mismatched_fraction(self) -> float:
        return self.mismatched / self.count if self.count else 0.0


def nonfinite_masks(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nan mask, signed inf mask: +1/-1/0)."""
    if not is_float(a):
        zeros = np.zeros(a.shape, dtype=bool)
        return zeros, zeros.astype(np.int8)
    a64 = as_float64(a)
    if a64.dtype.kind == "c":
        return np.isnan(a64.real) | np.isnan(a64.imag), np.zeros(a.shape, dtype=np.int8)
    return np.isnan(a64), np.where(np.isposinf(a64), 1, np.where(np.isneginf(a64), -1, 0)).astype(np.int8)


def metrics(
    reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float, ignore: np.ndarray | None = None
) -> Metrics:
    """Error statistics over positions where both are finite; nonfinite disagreements counted apart. Positions
    where ``ignore`` is True (a case's declared padding) are left out of every count and statistic."""
    with np.errstate(all="ignore"):  # overflowing differences of huge finite values are data, not errors
        return _metrics(reference, candidate, rtol, atol, ignore)


CHUNK = 1 << 18  # elements per pass: small enough to stay in cache, large enough to amortise numpy's overhead
ULP_SAMPLE = 1 << 20


def _metrics(
    reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float, ignore: np.ndarray | None = None
) -> Metrics:
    """One cache-friendly sweep in chunks; float32 pairs are compared in float32 (|a - b| of close floats is exact)."""
    ref_flat, cand_flat = _flat(reference), _flat(candidate)
    kept = None if ignore is None else np.flatnonzero(~ignore.reshape(-1))  # flat positions judged
    if kept is not None:
        ref_flat, cand_flat = ref_flat[kept], cand_flat[kept]
    count = int(ref_flat.size)
    result = Metrics(count=count, rtol=rtol, atol=atol)
    if count == 0:
        result.max_abs = result.mean_abs = result.max_rel = 0.0
        return result
    work = np.float32 if reference.dtype == candidate.dtype == np.float32 else np.float64
    complex_input = ref_flat.dtype.kind == "c" or cand_flat.dtype.kind == "c"
    integers = is_integer(ref_flat) and is_integer(cand_flat)
    max_abs, total, n_finite, max_rel, beyond, worst, ratio = 0.0, 0.0, 0, 0.0, 0, 0, 0.0
    for start in range(0, count, CHUNK):
        r = _as(ref_flat[start : start + CHUNK], work, complex_input)
        c = _as(cand_flat[start : start + CHUNK], work, complex_input)
        finite_r, finite_c = np.isfinite(r), np.isfinite(c)
        if not (finite_r.all() and finite_c.all()):
            result.nan_mismatch += int(np.count_nonzero(np.isnan(r) != np.isnan(c)))
            both_inf = ~finite_r & ~finite_c & ~np.isnan(r) & ~np.isnan(c)
            one_inf = (np.isinf(r) & ~np.isnan(c) & ~np.isinf(c)) | (np.isinf(c) & ~np.isnan(r) & ~np.isinf(r))
            result.inf_mismatch += int(np.count_nonzero(one_inf | (both_inf & (r != c))))
            finite = finite_r & finite_c
            r, c = np.where(finite, r, 0), np.where(finite, c, 0)
            n_finite += int(np.count_nonzero(finite))
        else:
            n_finite += r.size
        diff = np.abs(r - c)
        magnitude = np.abs(r)
        allowed = atol + rtol * magnitude
        if integers:
            # Integers differ by at least 1 wherever they differ, whatever float64 made of them.
            differs = np.not_equal(ref_flat[start : start + CHUNK], cand_flat[start : start + CHUNK])
            diff = np.where(differs, np.maximum(diff, 1.0), 0.0)
            beyond += int(np.count_nonzero((diff > allowed) | (differs & (allowed < 1))))
        else:
            beyond += int(np.count_nonzero(diff > allowed))
        if diff.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
            ratio = max(ratio, float(ratios.max()))
        position = int(np.argmax(diff))
        if diff[position] > max_abs or start == 0:
            max_abs, worst = float(diff[position]), start + position
        total += float(diff.sum(dtype=np.float64))
        zero_ref = magnitude == 0
        if zero_ref.any():
            if np.any(diff[zero_ref] > 0):
                max_rel = float("inf")
            magnitude = np.where(zero_ref, 1, magnitude)
        max_rel = max(max_rel, float((diff / magnitude).max()))
    result.mismatched = beyond + result.nan_mismatch + result.inf_mismatch
    worst = int(kept[worst]) if kept is not None else worst
    result.worst_index = tuple(int(i) for i in np.unravel_index(worst, reference.shape)) if reference.ndim else ()
    result.max_abs = max_abs
    result.mean_abs = total / n_finite if n_finite else 0.0
    result.max_rel = max_rel
    result.tolerance_ratio = ratio
    _ulp_stats(result, ref_flat, cand_flat)
    return result


def _flat(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    if str(flat.dtype) == "bfloat16":
        return flat.astype(np.float32)
    return flat


def _as(chunk: np.ndarray, work: type, complex_input: bool) -> np.ndarray:
    if complex_input:
        return chunk.astype(np.complex128)
    return chunk if chunk.dtype == work else chunk.astype(work)


def _ulp_stats(result: Metrics, ref_flat: np.ndarray, cand_flat: np.ndarray) -> None:
    """ULP max and percentiles over finite positions (on an even sample past ULP_SAMPLE elements)."""
    if ref_flat.dtype != cand_flat.dtype or not is_float(ref_flat) or ref_flat.dtype.kind == "c":
        return
    if ref_flat.size > ULP_SAMPLE:
        step = -(-ref_flat.size // ULP_SAMPLE)
        ref_flat, cand_flat = ref_flat[::step], cand_flat[::step]
        result.extra["ulp_sampled"] = True
    ulps = ulp_distance(ref_flat, cand_flat)
    if ulps is None:
        return
    ulps = ulps[np.isfinite(ref_flat) & np.isfinite(cand_flat)]
    if ulps.size:
        result.ulp_max = float(ulps.max())
        result.ulp_p50, result.ulp_p99 = (float(v) for v in np.percentile(ulps, [50, 99]))


_INT_VIEW = {2: np.int16, 4: np.int32, 8: np.int64}


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Units in the last place between same-dtype real floats (flattened), else None."""
    if a.dtype != b.dtype or not is_float(a) or a.dtype.kind == "c" or a.itemsize not in _INT_VIEW:
        return None
    view = _INT_VIEW[a.itemsize]
    unsigned = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize]
    sign = unsigned(1) << unsigned(8 * a.itemsize - 1)

    def ordered(x: np.ndarray) -> np.ndarray:
        # Map float bit patterns onto unsigned integers in the floats' order (-0.0 and +0.0 meet).
        bits = np.ascontiguousarray(x).reshape(-1).view(view)
        raw = bits.view(unsigned)
        return np.where(bits < 0, sign - (raw & (sign - unsigned(1))), raw | sign).astype(np.uint64)

    oa, ob = ordered(a), ordered(b)
    return np.where(oa >= ob, oa - ob, ob - oa).astype(np.float64)


def format_value(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.7g}"
    return str(value.item() if hasattr(value, "item") else value)


def format_index(index: tuple[int, ...] | None) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]" if index else "[]"


STATISTICS = ("min_atol", "min_rtol", "abs_mean", "abs_median", "abs_p99", "rel_mean", "rel_median", "rel_p99")


def error_statistics(
    reference: np.ndarray, candidate: np.ndarray, ignore: np.ndarray | None = None
) -> dict[str, Any] | None:
    """The smallest tolerance that covers every difference, and the spread of the errors (Polygraphy's "minimum
    required tolerance"; the statistics users ask for), over the positions judged (``ignore``: declared padding,
    left out); None for arrays that cannot be compared elementwise (other shapes, non-numeric dtypes).

    - ``min_atol``: the smallest atol that passes with rtol=0 (max |Δ|); ``min_rtol``: the smallest rtol that passes
      with atol=0 (max |Δ|/|reference|, infinite where the reference is 0 and the candidate is not). Both are
      infinite when NaN or ±Inf sit in other places, which no tolerance covers (``within``'s rule, reference first).
    - ``abs_*``: mean, median and 99th percentile of |Δ| over positions where both are finite; ``rel_*``: the same of
      |Δ|/|reference| over the finite positions where the reference is not 0 (``rel_positions`` of them).
    Percentiles are taken on an even sample past ``ULP_SAMPLE`` elements (``sampled``); the mean and both minimal
    tolerances always cover every position."""
    if reference.shape != candidate.shape:
        return None
    numeric = "biufc"
    if reference.dtype.kind not in numeric and str(reference.dtype) != "bfloat16":
        return None
    if candidate.dtype.kind not in numeric and str(candidate.dtype) != "bfloat16":
        return None
    with np.errstate(all="ignore"):
        r, c = _flat(reference), _flat(candidate)
        if ignore is not None:
            kept = ~np.broadcast_to(ignore, reference.shape).reshape(-1)
            r, c = r[kept], c[kept]
        complex_input = r.dtype.kind == "c" or c.dtype.kind == "c"
        r = r.astype(np.complex128 if complex_input else np.float64)
        c = c.astype(np.complex128 if complex_input else np.float64)
        nan_r, nan_c = np.isnan(r), np.isnan(c)
        finite = np.isfinite(r) & np.isfinite(c)
        # NaN against NaN and equal infinities agree; anything else non-finite is beyond every tolerance.
        uncovered = bool(np.any(~finite & ~(nan_r & nan_c) & ~((r == c) & ~nan_r)))
        diff = np.abs(r[finite] - c[finite])
        magnitude = np.abs(r[finite])
        nonzero = magnitude > 0
        rel = diff[nonzero] / magnitude[nonzero]
        min_atol = float(diff.max()) if diff.size else 0.0
        min_rtol = float(rel.max()) if rel.size else 0.0
        if np.any(diff[~nonzero] > 0):
            min_rtol = float("inf")  # a difference where the reference is 0 needs an atol
        if uncovered:
            min_atol = min_rtol = float("inf")
        sampled = diff.size > ULP_SAMPLE

        def spread(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
            if not values.size:
                return None, None, None
            mean = float(values.mean())
            if values.size > ULP_SAMPLE:
                values = values[:: -(-values.size // ULP_SAMPLE)]
            median, p99 = np.percentile(values, [50, 99])
            return mean, float(median), float(p99)

        abs_mean, abs_median, abs_p99 = spread(diff)
        rel_mean, rel_median, rel_p99 = spread(rel)
    return {
        "min_atol": min_atol,
        "min_rtol": min_rtol,
        "abs_mean": abs_mean,
        "abs_median": abs_median,
        "abs_p99": abs_p99,
        "rel_mean": rel_mean,
        "rel_median": rel_median,
        "rel_p99": rel_p99,
        "rel_positions": int(rel.size),
        "finite_positions": int(diff.size),
        "sampled": sampled,
    }


def describe_statistics(stats: dict[str, Any] | None) -> str:
    """ "covered by atol=1.51 (rtol=0) or rtol=11.4 (atol=0); |Δ| mean 0.40, median 0.31, p99 1.4; relative …"."""
    if not stats:
        return ""

    def g(value: float | None) -> str:
        return "—" if value is None else "inf" if value == float("inf") else f"{value:.3g}"

    if stats["min_atol"] == float("inf"):
        need = "no tolerance covers every difference (NaN or Inf in other places)"
    else:
        rtol = (
            "no rtol alone (the reference is 0 where the candidate is not)"
            if stats["min_rtol"] == float("inf")
            else f"rtol={g(stats['min_rtol'])} (with atol=0)"
        )
        need = f"smallest tolerance that covers every difference: atol={g(stats['min_atol'])} (with rtol=0) or {rtol}"
    text = f"{need}; |Δ| mean {g(stats['abs_mean'])}, median {g(stats['abs_median'])}, p99 {g(stats['abs_p99'])}"
    if stats.get("rel_mean") is not None:
        text += (
            f"; relative error mean {g(stats['rel_mean'])}, median {g(stats['rel_median'])}, p99 {g(stats['rel_p99'])}"
        )
    if stats.get("sampled"):
        text += " (percentiles on an even sample)"
    return text
