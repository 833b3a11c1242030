"""Find the rearrangement that turns the reference into the candidate.

Same values in another arrangement is a ``layout`` discrepancy (a transposed
output, a pad-order mix-up that shifts values, NCHW read as NHWC). The search
is bounded: axis permutations (with a reshape when shapes differ), flips, and
cyclic shifts along one axis; the first transform that matches is named.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np

MAX_PERMUTATION_RANK = 5
MAX_SHIFTS_PER_AXIS = 64


def same_multiset(reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float) -> bool:
    """True when the sorted values agree within tolerance (NaNs sort last on both sides)."""
    if reference.size != candidate.size or reference.size == 0:
        return False
    a = np.sort(reference.astype(np.float64).reshape(-1))
    b = np.sort(candidate.astype(np.float64).reshape(-1))
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        close = (np.abs(a - b) <= atol + rtol * np.abs(a)) | (a == b) | both_nan
    return bool(close.all())


def find_transform(reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float) -> str | None:
    """A description like ``reference.roll(2, dim=3)`` of a transform mapping reference onto candidate."""
    if not same_multiset(reference, candidate, rtol, atol):
        return None
    if np.array_equal(reference.reshape(-1), candidate.reshape(-1)) and reference.shape != candidate.shape:
        return f"reference.reshape{tuple(candidate.shape)}"
    for description, transformed in _transforms(reference, candidate.shape):
        if transformed.shape == candidate.shape and _close(transformed, candidate, rtol, atol):
            return description
    return None


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore"):
        return bool(((np.abs(a64 - b64) <= atol + rtol * np.abs(a64)) | (np.isnan(a64) & np.isnan(b64))).all())


def _transforms(ref: np.ndarray, target_shape: tuple[int, ...]) -> Iterator[tuple[str, np.ndarray]]:
    ndim = ref.ndim
    if ndim <= MAX_PERMUTATION_RANK:
        for perm in itertools.permutations(range(ndim)):
            if perm == tuple(range(ndim)):
                continue
            permuted = np.transpose(ref, perm)
            if permuted.shape == tuple(target_shape):
                yield f"reference.permute{perm}", permuted
            elif permuted.size == int(np.prod(target_shape)):
                yield f"reference.permute{perm}.reshape{tuple(target_shape)}", permuted.reshape(target_shape)
    if ref.shape != tuple(target_shape):
        return
    for axis in range(ndim):
        if ref.shape[axis] > 1:
            yield f"reference.flip(dim={axis})", np.flip(ref, axis)
    for axis in range(ndim):
        size = ref.shape[axis]
        for shift in _shifts(size):
            yield f"reference.roll({shift}, dim={axis})", np.roll(ref, shift, axis)


def _shifts(size: int) -> Iterator[int]:
    limit = min(size - 1, MAX_SHIFTS_PER_AXIS)
    for k in range(1, limit + 1):
        yield k
        if size - k != k:
            yield -k


