"""Input samples ("probes") that expose each kind of discrepancy.

- ``base``: the case's own inputs.
- ``alt``: other values, same shapes; an exported graph that ignores an input shows here.
- ``ties``: floating inputs quantised coarsely, so many values are equal.
- ``ramp``: the ``ties`` sample plus a strictly increasing tiny ramp: no two values tie.
- ``shape``: other sizes on the declared dynamic axes (axes sharing a name change together).
- ``special``: NaN, ±Inf, 0 and huge values planted in floating inputs (opt-in per case).
- ``negated``, ``scaled_up``, ``scaled_down``, ``shifted``: the floating inputs negated, ×10, ×0.1 and moved
  by three standard deviations. Added when an exporter warned that its trace froze a data-dependent value
  (a TorchScript ``TracerWarning``): ``alt`` draws from the base distribution and stays in the traced branch.

Integer and boolean inputs keep what a model may rely on: ``alt`` permutes their elements within each row, so
the count of each value (the number of ``True`` in a mask, duplicates among indices) and the range stay; rows
that are sorted stay sorted (whole rows are permuted instead). Everything is seeded: the same case gives the
same probes on every run.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

ALL_PROBES = ("base", "alt", "ties", "ramp", "shape", "special")
DEFAULT_PROBES = ("base", "alt", "ties", "ramp", "shape")
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


def _other_shapes(feeds: Mapping[str, np.ndarray], dynamic_axes: Mapping[str, Mapping[int, str]],
                  rng: np.random.Generator) -> dict[str, np.ndarray] | None:
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


__all__ = ["ALL_PROBES", "DEFAULT_PROBES", "DISTRIBUTION_PROBES", "SYNTHETIC_PROBES", "make_probes", "parse_probes",
           "describe"]
