"""Is a runtime's result at a reduced inference precision (OpenVINO's bf16 default) within what that precision
allows? Read by blame once the runtime's own full-precision control (``precision=f32``) agrees with eager.

The candidate is held against the float64 oracle (eager float32 where no oracle ran), element by element:
``|candidate - truth| <= rtol * (|truth| + rms(truth))``, with ``rtol`` the precision's own tolerance, declared
by the backend with its control (``Control.tolerances``; OpenVINO: bf16 1.6e-2 and f16 1e-3, ``torch.testing``'s
defaults for those dtypes, about four units of roundoff). The ``rms(truth)`` term is the output's own scale: a value
near zero that is a sum of terms of ordinary size carries their rounding error, so an absolute floor relative to
the output's typical magnitude is what a reduced precision can be held to (a fixed atol would call every logit near
zero inaccurate). Integer and boolean outputs must be equal (a flipped argmax is a different answer at any
precision), and non-finite values must sit where the truth has them.

The verdict is then ``reduced_precision`` (a warning, never float noise: the runtime computes at its default what a
deployment at that default gets), or it stays a discrepancy whose reason says the model is not accurate at that
precision even by the precision's own tolerance. The evidence is not the candidate's: the control is another run of
the runtime, the truth is float64 PyTorch, and the tolerance comes from the precision, not from the gap.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PrecisionCheck:
    within: bool
    worst: float  # the largest |candidate - truth| / (rtol * (|truth| + rms)), 1.0 at the tolerance's edge
    max_rel: float  # the largest |candidate - truth| / (|truth| + rms): the error in the output's own terms
    rtol: float
    note: str  # why it is not within, in words ("" when within)
    truth_name: str = "the float64 oracle"

    def describe(self, precision: str) -> str:
        relative = f"largest error {self.max_rel:.3g} of the output's scale against {self.truth_name}"
        if self.within:
            return (
                f"{relative}, within {precision}'s own tolerance (rtol {self.rtol:g} of |value| + the output's "
                f"RMS): accurate at {precision}"
            )
        over = f", {self.worst:.3g}x over" if np.isfinite(self.worst) else ""
        return (
            f"{self.note or relative}, beyond {precision}'s own tolerance (rtol {self.rtol:g} of |value| + the "
            f"output's RMS{over}): not accurate at {precision}"
        )


def check(
    candidate: np.ndarray,
    truth: np.ndarray,
    rtol: float,
    truth_name: str = "the float64 oracle",
    keep: np.ndarray | None = None,
) -> PrecisionCheck:
    """Whether ``candidate`` (computed at a reduced precision) is within ``rtol`` of ``truth`` (see the module);
    ``keep``: the positions judged, where the case declared an output mask (padding is not held to anything)."""
    if keep is not None and candidate.shape == truth.shape and keep.shape == truth.shape:
        candidate, truth = candidate[keep], truth[keep]
    return dataclasses.replace(_check(candidate, truth, rtol), truth_name=truth_name)


def _check(candidate: np.ndarray, truth: np.ndarray, rtol: float) -> PrecisionCheck:
    if candidate.shape != truth.shape:
        return PrecisionCheck(
            False, float("inf"), float("inf"), rtol, f"shape {tuple(candidate.shape)} against {tuple(truth.shape)}"
        )
    if not _is_float(truth) or not _is_float(candidate):
        differ = int(np.count_nonzero(np.asarray(candidate) != np.asarray(truth).astype(candidate.dtype)))
        if differ:
            return PrecisionCheck(
                False,
                float("inf"),
                float("inf"),
                rtol,
                f"{differ} of {truth.size} {truth.dtype} values differ (a discrete output must be "
                "equal at any precision)",
            )
        return PrecisionCheck(True, 0.0, 0.0, rtol, "")
    c, t = candidate.astype(np.float64), truth.astype(np.float64)
    finite = np.isfinite(t)
    with np.errstate(invalid="ignore"):
        same_special = ~finite & ((np.isnan(t) & np.isnan(c)) | (t == c))
    misplaced = int(np.count_nonzero((finite & ~np.isfinite(c)) | (~finite & ~same_special)))
    if misplaced:
        return PrecisionCheck(
            False, float("inf"), float("inf"), rtol, f"{misplaced} non-finite value(s) where the truth has other values"
        )
    if not finite.any():
        return PrecisionCheck(True, 0.0, 0.0, rtol, "")
    scale = float(np.sqrt(np.mean(np.square(t[finite]))))
    denominator = np.abs(t[finite]) + scale
    error = np.abs(c[finite] - t[finite])
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(denominator > 0, error / denominator, np.where(error > 0, np.inf, 0.0))
    max_rel = float(relative.max())
    return PrecisionCheck(max_rel <= rtol, max_rel / rtol, max_rel, rtol, "")


def _is_float(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating)
