"""Same values, another arrangement: decide ``layout`` from what is invariant, then name the transform.

A transposed output, a pad-order mix-up that shifts values, NCHW memory read as NHWC, rows returned in
another order, a complex output returned as (real, imaginary) pairs: the candidate holds exactly the
reference's values, elsewhere. The decision rests on invariants first:

- the multiset of elements (exact for integers, bit patterns for floats): the candidate is a permutation of
  the reference's elements;
- the multiset of rows along one dimension: the rows came back in another order;
- ``view_as_real`` for a complex reference returned as real pairs.

Then a bounded search names the transform: axis permutations (with a reshape when shapes differ), one axis
split into two factors and permuted (``reshape → permute → reshape``, e.g. channels-last memory flattened as
channels-first), flips, and cyclic shifts along one axis. Each candidate transform is tried on a sample of
positions before the whole array. When the multiset holds but no transform is found, the evidence says so
("a permutation of the reference's elements; transform not identified").

A coincidence is never called layout: the reference must have enough distinct values for its multiset to be
evidence, and index outputs whose rows are permutations by construction (argsort) are left to other rules.
Values equal only within tolerance (float noise on top of a rearrangement) count only with a named transform.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .compare import bit_identical, within

MAX_PERMUTATION_RANK = 5
MAX_SHIFTS_PER_AXIS = 64
MAX_TRANSFORMS = 6000
MIN_DISTINCT = 4
SAMPLE = 64


@dataclass
class Layout:
    evidence: str  # "candidate == reference.permute(0, 2, 1)", or what is known without a transform
    named: bool  # a transform was identified


def find_layout(reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float) -> Layout | None:
    """How ``candidate`` holds ``reference``'s values in another arrangement, or None when it does not."""
    complex_pairs = _complex_pairs(reference, candidate, rtol, atol)
    if complex_pairs is not None:
        return complex_pairs
    # One value has no arrangement: a [1, 1] against a scalar is a shape difference, whichever is the reference.
    if reference.size != candidate.size or reference.size < 2 or not _informative(reference):
        return None
    if bit_identical(reference, candidate):
        return None
    exact = same_elements(reference, candidate)
    if exact:
        transform = find_transform(reference, candidate, 0.0, 0.0, exact=True)
        if transform is not None:
            return Layout(f"candidate == {transform}", True)
        rows = reordered_rows(reference, candidate)
        if rows is not None:
            return Layout(rows, False)
        return Layout(
            f"a permutation of the reference's {reference.size} elements (the same multiset, exactly); "
            "transform not identified",
            False,
        )
    transform = find_transform(reference, candidate, rtol, atol)  # None unless the values agree as a multiset
    if transform is None:
        return None
    return Layout(f"candidate == {transform} (within rtol={rtol:g}, atol={atol:g})", True)


def _informative(reference: np.ndarray) -> bool:
    """Is the reference's multiset evidence? Enough distinct values, and not a row of indices that every
    answer of the same op would permute (argsort's rows are permutations of 0..n-1 by construction)."""
    flat = _orderable(reference).reshape(-1)
    if len(np.unique(flat[: 1 << 20])) < min(MIN_DISTINCT, reference.size):
        return False
    if reference.dtype.kind in "iu" and reference.ndim:
        rows = reference.reshape(-1, reference.shape[-1])
        if rows.shape[1] > 1 and np.array_equal(
            np.sort(rows, axis=1), np.broadcast_to(np.arange(rows.shape[1]), rows.shape)
        ):
            return False
    return True


def _orderable(a: np.ndarray) -> np.ndarray:
    """Values whose equality is exact equality of the stored bits (floats as unsigned integers), same shape; a
    complex128 element becomes two words on a trailing axis."""
    if a.dtype.kind in "fc" or str(a.dtype) == "bfloat16":
        flat = np.ascontiguousarray(a.reshape(-1))
        if a.dtype.itemsize == 16:
            return flat.view(np.uint64).reshape(*a.shape, 2)
        width = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
        return flat.view(width).reshape(a.shape)
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    return a


def same_elements(reference: np.ndarray, candidate: np.ndarray) -> bool:
    """The exact multiset: the same elements (bit patterns, for floats), each as often."""
    if reference.dtype != candidate.dtype or reference.size != candidate.size:
        return False
    a, b = _orderable(reference), _orderable(candidate)
    if a.ndim > reference.ndim:  # complex128 as word pairs: compare as rows
        return _same_row_multiset(a.reshape(-1, 2), b.reshape(-1, 2))
    return bool(np.array_equal(np.sort(a.reshape(-1)), np.sort(b.reshape(-1))))


def same_multiset(reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float) -> bool:
    """True when the sorted values agree within tolerance (NaNs sort last on both sides)."""
    if reference.size != candidate.size or reference.size == 0 or reference.dtype.kind == "c":
        return False
    a = np.sort(reference.astype(np.float64).reshape(-1))
    b = np.sort(candidate.astype(np.float64).reshape(-1))
    return bool(within(a, b, rtol, atol).all())


def _same_row_multiset(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    rows_a = np.ascontiguousarray(a).view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).reshape(-1)
    rows_b = np.ascontiguousarray(b).view(np.dtype((np.void, b.dtype.itemsize * b.shape[1]))).reshape(-1)
    return bool(np.array_equal(np.sort(rows_a), np.sort(rows_b)))


def reordered_rows(reference: np.ndarray, candidate: np.ndarray) -> str | None:
    """ "the rows along dim d in another order", when the slices along one dimension are the same multiset."""
    if reference.shape != candidate.shape or reference.ndim == 0:
        return None
    ref, cand = _orderable(reference), _orderable(candidate)
    for dim in range(reference.ndim):
        n = reference.shape[dim]
        if n < 2 or n > 1 << 16:
            continue
        a = np.moveaxis(ref, dim, 0).reshape(n, -1)
        b = np.moveaxis(cand, dim, 0).reshape(n, -1)
        if not _same_row_multiset(a, b):
            continue
        keys_a = [row.tobytes() for row in a]
        keys_b = [row.tobytes() for row in b]
        if len(set(keys_a)) < 2:
            continue
        moved = sum(x != y for x, y in zip(keys_a, keys_b))
        where: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys_a):
            where.setdefault(key, []).append(i)
        order = [where[key].pop(0) for key in keys_b]
        shown = f": candidate row i is reference row {order}" if n <= 16 else ""
        return f"the {n} slices along dim {dim} are the reference's, in another order ({moved} of {n} moved){shown}"
    return None


def _complex_pairs(reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float) -> Layout | None:
    if reference.dtype.kind != "c" or candidate.dtype.kind == "c" or reference.size == 0:
        return None
    pairs = np.stack([reference.real, reference.imag], axis=-1)
    if candidate.size != pairs.size:
        return None
    if candidate.shape == pairs.shape:
        shaped = candidate
        text = "torch.view_as_real(reference)"
    elif candidate.size == pairs.size:
        shaped = candidate.reshape(pairs.shape)
        text = f"torch.view_as_real(reference).reshape{tuple(candidate.shape)}"
    else:
        return None
    if _close(pairs, shaped.astype(pairs.dtype), rtol, atol):
        return Layout(f"candidate == {text}: the complex values returned as (real, imaginary) pairs", True)
    return None


def find_transform(
    reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float, exact: bool = False
) -> str | None:
    """A description like ``reference.roll(2, dim=3)`` of a transform mapping reference onto candidate."""
    if not exact and not same_multiset(reference, candidate, rtol, atol):
        return None
    if reference.shape != candidate.shape and bit_identical(reference.reshape(-1), candidate.reshape(-1)):
        return f"reference.reshape{tuple(candidate.shape)}"
    target = tuple(candidate.shape)
    flat_ref, flat_cand = reference.reshape(-1), candidate.reshape(-1)
    rng = np.random.default_rng(0)
    sample = rng.choice(reference.size, size=min(SAMPLE, reference.size), replace=False)

    def matches(values: np.ndarray, positions: np.ndarray | None) -> bool:
        if positions is None:
            wanted = flat_cand
        else:
            wanted = flat_cand[positions]
        if exact:
            return bool(np.array_equal(_orderable(values), _orderable(wanted)))
        return _close(values, wanted, rtol, atol)

    for count, (description, index_of, apply) in enumerate(_transforms(reference.shape, target)):
        if count >= MAX_TRANSFORMS:
            break
        if not matches(flat_ref[index_of(sample)], sample):
            continue
        if matches(apply(reference).reshape(-1), None):
            return description
    return None


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    return bool(within(a, b, rtol, atol).all())


Transform = tuple[str, Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _transforms(shape: tuple[int, ...], target: tuple[int, ...]) -> Iterator[Transform]:
    """(description, flat target positions -> flat reference positions, the transform applied to an array)."""
    ndim = len(shape)
    size = int(np.prod(shape)) if shape else 1
    if ndim <= MAX_PERMUTATION_RANK:
        for perm in itertools.permutations(range(ndim)):
            if perm == tuple(range(ndim)):
                continue
            permuted_shape = tuple(shape[p] for p in perm)
            if permuted_shape == target:
                text = f"reference.permute{perm}"
            elif size == int(np.prod(target)):
                text = f"reference.permute{perm}.reshape{target}"
            else:
                continue
            yield text, _permute_index(shape, perm), _permute_apply(shape, perm, target)
    for axis, size_axis in enumerate(shape):
        if ndim + 1 > MAX_PERMUTATION_RANK + 1:
            break
        for factor in _divisors(size_axis):
            split = shape[:axis] + (factor, size_axis // factor) + shape[axis + 1 :]
            for perm in itertools.permutations(range(len(split))):
                if perm == tuple(range(len(split))) or _is_plain(perm, axis):
                    continue
                text = f"reference.reshape{split}.permute{perm}.reshape{target}"
                yield text, _permute_index(split, perm), _permute_apply(split, perm, target)
    if tuple(shape) != tuple(target):
        return
    for axis in range(ndim):
        if shape[axis] > 1:
            yield f"reference.flip(dim={axis})", _flip_index(shape, axis), (lambda a, axis=axis: np.flip(a, axis))
    for axis in range(ndim):
        for shift in _shifts(shape[axis]):
            yield (
                f"reference.roll({shift}, dim={axis})",
                _roll_index(shape, axis, shift),
                (lambda a, axis=axis, shift=shift: np.roll(a, shift, axis)),
            )


def _is_plain(perm: tuple[int, ...], axis: int) -> bool:
    """A permutation that keeps the two halves of the split axis adjacent and in order is no split at all."""
    position = perm.index(axis)
    return position + 1 < len(perm) and perm[position + 1] == axis + 1


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n) if n % d == 0] if n <= 1 << 16 else []


def _permute_index(shape: tuple[int, ...], perm: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    permuted = tuple(shape[p] for p in perm)

    def index_of(positions: np.ndarray) -> np.ndarray:
        coords = np.unravel_index(positions, permuted)
        original = [None] * len(shape)
        for k, p in enumerate(perm):
            original[p] = coords[k]
        return np.ravel_multi_index(tuple(original), shape)

    return index_of


def _permute_apply(shape: tuple[int, ...], perm: tuple[int, ...], target: tuple[int, ...]):
    return lambda a: np.transpose(a.reshape(shape), perm).reshape(target)


def _flip_index(shape: tuple[int, ...], axis: int) -> Callable[[np.ndarray], np.ndarray]:
    def index_of(positions: np.ndarray) -> np.ndarray:
        coords = list(np.unravel_index(positions, shape))
        coords[axis] = shape[axis] - 1 - coords[axis]
        return np.ravel_multi_index(tuple(coords), shape)

    return index_of


def _roll_index(shape: tuple[int, ...], axis: int, shift: int) -> Callable[[np.ndarray], np.ndarray]:
    def index_of(positions: np.ndarray) -> np.ndarray:
        coords = list(np.unravel_index(positions, shape))
        coords[axis] = (coords[axis] - shift) % shape[axis]
        return np.ravel_multi_index(tuple(coords), shape)

    return index_of


def _shifts(size: int) -> Iterator[int]:
    limit = min(size - 1, MAX_SHIFTS_PER_AXIS)
    for k in range(1, limit + 1):
        yield k
        if size - k != k:
            yield -k
