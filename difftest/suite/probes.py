"""Input samples ("probes") that expose each kind of discrepancy.

- ``base``: the case's own inputs.
- ``alt``: other values, same shapes; an exported graph that ignores an input shows here.
- ``counts``: each boolean input (or integer one of 0s and 1s) with another number of ``True`` per row (sorted
  rows stay sorted), every other input as in ``base``: a value frozen from a mask's count (``len(x[mask])``
  traced to a constant) shows here.
- ``indices``: each non-constant integer input drawn anew within the range its base values span (``[0, max]``
  for non-negative, index-like inputs; distinct rows stay distinct, sorted rows sorted), every other input as in
  ``base``: which rows an index selects, its duplicates and its maximum move, which ``alt``'s permutation keeps.
- ``ties``: floating inputs quantised coarsely, so many values are equal.
- ``ramp``: the ``ties`` sample plus a strictly increasing tiny ramp: no two values tie.
- ``shape``: other sizes on the declared dynamic axes (axes sharing a name change together).
- ``special``: NaN, ±Inf, 0 and huge values planted in floating inputs (opt-in per case).
- ``negated``, ``scaled_up``, ``scaled_down``, ``shifted``: the floating inputs negated, ×10, ×0.1 and moved
  by three standard deviations. Added when an exporter warned that its trace froze a data-dependent value
  (a TorchScript ``TracerWarning``): ``alt`` draws from the base distribution and stays in the traced branch.

Integer and boolean inputs keep what a model may rely on: ``alt`` permutes their elements within each row, so
the count of each value (the number of ``True`` in a mask, duplicates among indices) and the range stay; rows
that are sorted stay sorted (whole rows are permuted instead). ``counts`` and ``indices`` move exactly what
``alt`` keeps; a model whose contract they break (eager itself refuses them) records them as ``invalid_probe``.
Everything is seeded: the same case gives the same probes on every run.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

ALL_PROBES = ("base", "alt", "counts", "indices", "ties", "ramp", "shape", "special")
DEFAULT_PROBES = ("base", "alt", "counts", "indices", "ties", "ramp", "shape")
# Probes that move inputs' values (not their shapes) to show what an export froze: judged like ``alt``.
VALUE_PROBES = ("alt", "counts", "indices")
DISTRIBUTION_PROBES = ("negated", "scaled_up", "scaled_down", "shifted")
# Probes difftest generates (a failure of the reference on them says the probe broke the model's contract);
# anything else is the case's own sample.
SYNTHETIC_PROBES = frozenset(ALL_PROBES[1:] + DISTRIBUTION_PROBES)
_FEW_VALUES = 16


def make_probes(
    feeds: Mapping[str, np.ndarray],
    selected: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    custom: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """The probes that apply to these inputs, in a stable order; each maps input name -> array."""
    probes: dict[str, dict[str, np.ndarray]] = {"base": dict(feeds)}
    has_float = any(_is_float(a) and a.size for a in feeds.values())
    rng = np.random.default_rng(seed + 1)
    if "alt" in selected and any(a.size for a in feeds.values()):
        probes["alt"] = {name: _other_values(a, rng) for name, a in feeds.items()}
    if "counts" in selected:
        counts = {name: _other_counts(a) if _is_mask(a) else a for name, a in feeds.items()}
        if any(_is_mask(feeds[n]) and not np.array_equal(counts[n], feeds[n]) for n in feeds):
            probes["counts"] = counts
    if "indices" in selected:
        drawn_rng = np.random.default_rng(seed + 3)
        indices = {name: _other_indices(a, drawn_rng) if _is_index_like(a) else a for name, a in feeds.items()}
        if any(_is_index_like(feeds[n]) and not np.array_equal(indices[n], feeds[n]) for n in feeds):
            probes["indices"] = indices
    if "ties" in selected and has_float:
        ties = {name: _quantised(a) for name, a in feeds.items()}
        if any(not np.array_equal(ties[n], feeds[n]) for n in feeds) or _has_ties(feeds):
            probes["ties"] = ties
            if "ramp" in selected:
                probes["ramp"] = {name: _ramped(a) for name, a in ties.items()}
    if "shape" in selected and dynamic_axes:
        reshaped = _other_shapes(feeds, dynamic_axes, np.random.default_rng(seed + 2))
        if reshaped is not None:
            probes["shape"] = reshaped
    if "special" in selected and has_float:
        probes["special"] = {name: _with_specials(a) for name, a in feeds.items()}
    for name in DISTRIBUTION_PROBES:
        if name in selected and has_float:
            probes[name] = {key: _moved(a, name) for key, a in feeds.items()}
    for name, sample in (custom or {}).items():
        probes[name] = {**feeds, **{k: np.asarray(v) for k, v in sample.items()}}
    return probes


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" or str(a.dtype) == "bfloat16"


def _other_values(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if a.size == 0:
        return a.copy()
    values = np.unique(a.astype(np.float64) if str(a.dtype) == "bfloat16" else a)
    if len(values) == 1:
        # With one value, any other integer could break the model's contract; a float moves.
        return a.copy() if a.dtype.kind != "f" else (a.astype(np.float64) * 0.5 + 0.25).astype(a.dtype)
    if not _is_float(a) or len(values) <= _FEW_VALUES:
        return _permuted(a, rng)  # masks, labels, indices, counts: the same values elsewhere
    wide = a.astype(np.float64)
    std = float(wide.std()) or 1.0
    return (rng.standard_normal(a.shape) * std + float(wide.mean())).astype(a.dtype)


def _permuted(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same elements in other places: each row (last axis) shuffled on its own, so per-row counts hold; when
    the rows are sorted (lengths, offsets, left-padded masks), the rows themselves are shuffled instead."""
    if a.ndim == 0:
        return a.copy()
    rows = a.reshape(-1, a.shape[-1])
    if _rows_sorted(rows):
        if len(rows) < 2:
            return a.copy()  # no other arrangement keeps a single sorted row what it is
        order = rng.permutation(len(rows))
        if np.array_equal(rows[order], rows):
            order = np.roll(np.arange(len(rows)), 1)
        return rows[order].reshape(a.shape).copy()
    shuffled = rng.permuted(rows, axis=1)
    if np.array_equal(shuffled, rows):
        shuffled = np.roll(rows, 1, axis=1)
    if np.array_equal(shuffled, rows) and len(rows) > 1:  # every row constant: move rows instead
        shuffled = np.roll(rows, 1, axis=0)
    return shuffled.reshape(a.shape).copy()


def _other_counts(a: np.ndarray) -> np.ndarray:
    """A boolean input with another number of ``True`` in every row that can take one (one more where the row
    has room, else one fewer; a row keeps at least one ``True`` if it had one): a sorted row (a padding mask)
    stays sorted, an unsorted one changes its first position that can flip."""
    if a.size == 0 or a.ndim == 0:
        return a.copy()
    rows = a.reshape(-1, a.shape[-1]).astype(bool)
    width = rows.shape[1]
    for row in rows:
        count = int(row.sum())
        target = count + 1 if count < width else count - 1
        if target == 0 and count > 0 and width > 1:
            continue  # one True in a one-wide row: nothing else keeps the row meaningful
        if count == width and width == 1:
            continue
        descending = bool(row[0]) and not bool(row[-1])
        ascending = not bool(row[0]) and bool(row[-1])
        sorted_row = bool((np.diff(row.astype(np.int8)) <= 0).all() or (np.diff(row.astype(np.int8)) >= 0).all())
        if sorted_row and (ascending or descending or count in (0, width)):
            fresh = np.zeros(width, dtype=bool)
            if ascending:
                fresh[width - target :] = True
            else:
                fresh[:target] = True
            row[:] = fresh
        else:
            flip = np.flatnonzero(row == (target < count))[0]
            row[flip] = not row[flip]
    return rows.reshape(a.shape).astype(a.dtype)


def _is_mask(a: np.ndarray) -> bool:
    """A boolean input, or an integer one holding only 0 and 1 (an attention mask)."""
    if a.dtype == np.bool_:
        return True
    return a.dtype.kind in "iu" and a.size > 0 and set(np.unique(a).tolist()) <= {0, 1}


def _is_index_like(a: np.ndarray) -> bool:
    """An integer input that is not a mask, with more than one value and at least one dimension: an index, a
    label, a token id. Scalars and constant tensors (a length, a size) are left alone: any other value could break
    the model's contract, as ``alt`` also assumes."""
    return a.dtype.kind in "iu" and a.ndim > 0 and a.size > 1 and len(np.unique(a)) > 1 and not _is_mask(a)


def _distinct_draw(rng: np.random.Generator, low: int, high: int, width: int) -> np.ndarray:
    """``width`` distinct integers in [low, high] from a range too large to list (ids, timestamps)."""
    drawn = np.unique(rng.integers(low, high, size=width, endpoint=True))
    while drawn.size < width:
        drawn = np.unique(np.concatenate([drawn, rng.integers(low, high, size=width - drawn.size, endpoint=True)]))
    return rng.permutation(drawn)


def _other_indices(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integers drawn anew within the range the base values span ([0, max] when none is negative), per row:
    rows of distinct values stay distinct (drawn without replacement where the range allows), sorted rows stay
    sorted. The draw differs from base; where it could only be a permutation of it, it is left to ``alt``."""
    low = 0 if int(a.min()) >= 0 else int(a.min())
    high = int(a.max())
    rows = a.reshape(-1, a.shape[-1])
    width = rows.shape[1]
    sorted_rows = _rows_sorted(rows)
    ascending = sorted_rows and bool((np.diff(rows.astype(np.float64), axis=-1) >= 0).all())
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        distinct = len(np.unique(row)) == width
        span = high - low + 1
        for _ in range(8):
            if distinct and span >= width:
                # rng.choice(span, replace=False) would build the whole range: past 2^20 values, draw and redraw
                drawn = (
                    rng.choice(span, size=width, replace=False) + low
                    if span <= 1 << 20
                    else _distinct_draw(rng, low, high, width)
                )
            else:
                drawn = rng.integers(low, high + 1, size=width)
            if sorted_rows:
                drawn = np.sort(drawn) if ascending else np.sort(drawn)[::-1]
            if not np.array_equal(np.sort(drawn), np.sort(row)):
                break
        out[i] = drawn.astype(a.dtype)
    return out.reshape(a.shape)


def _rows_sorted(rows: np.ndarray) -> bool:
    if rows.shape[-1] < 2:
        return False
    with np.errstate(invalid="ignore"):
        steps = np.diff(rows.astype(np.float64), axis=-1)
    varying = (steps != 0).any(axis=-1)
    if not varying.any():
        return False
    return bool((steps >= 0).all() or (steps <= 0).all())


def _moved(a: np.ndarray, how: str) -> np.ndarray:
    """A floating input moved out of its base distribution (integers and booleans are left as they are)."""
    if not _is_float(a) or a.size == 0:
        return a.copy()
    wide = a.astype(np.float64)
    if how == "negated":
        moved = -wide
    elif how == "scaled_up":
        moved = wide * 10
    elif how == "scaled_down":
        moved = wide * 0.1
    else:
        finite = wide[np.isfinite(wide)]
        moved = wide + 3 * (float(finite.std()) if finite.size and finite.std() > 0 else 1.0)
    return moved.astype(a.dtype)


def _step(a: np.ndarray) -> float:
    wide = a.astype(np.float64)
    finite = wide[np.isfinite(wide)]
    spread = float(finite.std()) if finite.size else 1.0
    return spread / 2 if spread > 0 else 1.0


def _quantised(a: np.ndarray) -> np.ndarray:
    if not _is_float(a) or a.size == 0:
        return a.copy()
    step = _step(a)
    return (np.round(a.astype(np.float64) / step) * step).astype(a.dtype)


def _ramped(a: np.ndarray) -> np.ndarray:
    """Add a strictly increasing ramp, small against the quantisation step but above rounding."""
    if not _is_float(a) or a.size == 0:
        return a.copy()
    wide = a.astype(np.float64)
    step = _step(a)
    eps = np.finfo(a.dtype).eps if a.dtype.kind == "f" else 2.0**-7
    magnitude = float(np.abs(wide).max()) or 1.0
    increment = max(step / (4 * a.size), 8 * eps * magnitude)
    ramp = np.arange(a.size, dtype=np.float64).reshape(a.shape) * increment
    return (wide + ramp).astype(a.dtype)


def _has_ties(feeds: Mapping[str, np.ndarray]) -> bool:
    return any(_is_float(a) and a.size > 1 and len(np.unique(a)) < a.size for a in feeds.values())


def _other_shapes(
    feeds: Mapping[str, np.ndarray], dynamic_axes: Mapping[str, Mapping[int, str]], rng: np.random.Generator
) -> dict[str, np.ndarray] | None:
    sizes: dict[str, int] = {}
    for name, axes in dynamic_axes.items():
        if name not in feeds:
            continue
        for axis, dim in axes.items():
            current = feeds[name].shape[int(axis)]
            sizes.setdefault(str(dim), current + max(1, current // 2))
    if not sizes:
        return None
    out = {}
    for name, a in feeds.items():
        axes = dynamic_axes.get(name, {})
        if not axes:
            out[name] = a
            continue
        shape = list(a.shape)
        for axis, dim in axes.items():
            shape[int(axis)] = sizes[str(dim)]
        out[name] = _fill_like(a, tuple(shape), rng)
    return out


def _fill_like(a: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if a.size == 0:
        return np.zeros(shape, dtype=a.dtype)
    values, counts = np.unique(a, return_counts=True)
    if _is_float(a) and len(values) > _FEW_VALUES:
        wide = a.astype(np.float64)
        return (rng.standard_normal(shape) * (float(wide.std()) or 1.0) + float(wide.mean())).astype(a.dtype)
    # Masks, labels and indices: the same values in the same proportions; sorted rows stay sorted.
    drawn = rng.choice(values, size=shape, p=counts / counts.sum()).astype(a.dtype)
    if a.ndim and _rows_sorted(a.reshape(-1, a.shape[-1])) and drawn.ndim:
        ascending = bool((np.diff(a.reshape(-1, a.shape[-1]).astype(np.float64), axis=-1) >= 0).all())
        drawn = np.sort(drawn, axis=-1)
        if not ascending:
            drawn = np.flip(drawn, axis=-1).copy()
    return drawn


def _with_specials(a: np.ndarray) -> np.ndarray:
    if not _is_float(a) or a.size == 0:
        return a.copy()
    out = a.copy().reshape(-1)
    huge = float(np.finfo(a.dtype).max) / 4 if a.dtype.kind == "f" else 1e30
    specials = [np.nan, np.inf, -np.inf, 0.0, huge, -huge]
    positions = np.linspace(0, out.size - 1, num=min(out.size, len(specials))).astype(int)
    for position, value in zip(positions, specials):
        out[position] = value
    return out.reshape(a.shape)


def describe(probe: str) -> str:
    return {
        "base": "the case's own inputs",
        "alt": "other values, same shapes",
        "counts": "boolean inputs with another number of True per row, the rest as in base",
        "indices": "integer inputs drawn anew within their range, the rest as in base",
        "ties": "coarsely quantised inputs (many ties)",
        "ramp": "the tie-rich inputs plus a strictly increasing ramp (no ties)",
        "shape": "other sizes on the dynamic axes",
        "special": "NaN, ±Inf, 0 and huge values planted",
        "negated": "the floating inputs negated (leaves a branch the trace froze)",
        "scaled_up": "the floating inputs ×10 (leaves a branch the trace froze)",
        "scaled_down": "the floating inputs ×0.1 (leaves a branch the trace froze)",
        "shifted": "the floating inputs moved by three standard deviations (leaves a branch the trace froze)",
    }.get(probe, "a sample the case supplied")


def parse_probes(text: str | None) -> list[str]:
    """``--probes base,alt`` -> list; raises ValueError naming an unknown probe."""
    if not text:
        return list(ALL_PROBES)
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in ALL_PROBES]
    if unknown:
        raise ValueError(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(ALL_PROBES)}")
    if "base" not in names:
        names.insert(0, "base")
    return names


__all__ = [
    "ALL_PROBES",
    "DEFAULT_PROBES",
    "DISTRIBUTION_PROBES",
    "SYNTHETIC_PROBES",
    "VALUE_PROBES",
    "make_probes",
    "parse_probes",
    "describe",
]
