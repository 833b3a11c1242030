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


def as_float64(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "c":
        return array.astype(np.complex128)
    return array.astype(np.float64)


def bit_identical(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


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


def metrics(reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float) -> Metrics:
    """Error statistics over positions where both are finite; nonfinite disagreements counted apart."""
    with np.errstate(all="ignore"):  # overflowing differences of huge finite values are data, not errors
        return _metrics(reference, candidate, rtol, atol)


def _metrics(reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float) -> Metrics:
    count = int(reference.size)
    result = Metrics(count=count, rtol=rtol, atol=atol)
    if count == 0:
        result.max_abs = result.mean_abs = result.max_rel = 0.0
        return result
    ref_nan, ref_inf = nonfinite_masks(reference)
    cand_nan, cand_inf = nonfinite_masks(candidate)
    result.nan_mismatch = int(np.count_nonzero(ref_nan != cand_nan))
    result.inf_mismatch = int(np.count_nonzero((ref_inf != cand_inf) & ~ref_nan & ~cand_nan))
    finite = ~(ref_nan | cand_nan | (ref_inf != 0) | (cand_inf != 0))
    r = as_float64(reference) if is_float(reference) else reference.astype(np.float64)
    c = as_float64(candidate) if is_float(candidate) else candidate.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(finite, np.abs(r - c), 0.0)
    magnitude = np.abs(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(finite & (magnitude > 0), diff / np.where(magnitude > 0, magnitude, 1.0), 0.0)
        rel = np.where(finite & (magnitude == 0) & (diff > 0), np.inf, rel)
    beyond = finite & (diff > atol + rtol * magnitude)
    result.mismatched = int(np.count_nonzero(beyond)) + result.nan_mismatch + result.inf_mismatch
    flat_worst = int(np.argmax(diff)) if diff.size else 0
    result.worst_index = tuple(int(i) for i in np.unravel_index(flat_worst, reference.shape)) if reference.ndim else ()
    result.max_abs = float(diff.max())
    n_finite = int(np.count_nonzero(finite))
    result.mean_abs = float(diff.sum() / n_finite) if n_finite else 0.0
    result.max_rel = float(rel.max())
    ulps = ulp_distance(reference, candidate)
    if ulps is not None:
        ulps = ulps[finite.reshape(-1)]
        if ulps.size:
            result.ulp_max = float(ulps.max())
            result.ulp_p50, result.ulp_p99 = (float(v) for v in np.percentile(ulps, [50, 99]))
    return result


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
