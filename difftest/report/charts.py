"""Pictures for the case page as Vega-Lite specs, drawn in the browser by a local copy of Vega.

Three views of one comparison: a histogram of the absolute error on log-spaced bins, reference against
candidate as a scatter, and for 2-D and image-like outputs a heatmap of where the differences are.
The numbers are reduced here with numpy (bins, an even sample of points, a max-pooled grid), so a
spec is a few kilobytes and costs well under a millisecond; Vega (vendored in ``assets/``, BSD-3)
draws them from disk, with nothing loaded from the network. The tables' numbers come from whole tensors.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

ASSETS = Path(__file__).parent / "assets"
SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
MAX_POINTS = 800
GRID = 32
BINS = 30
SIZE = {"width": 240, "height": 170}
MIN_ELEMENTS = 16  # below this the table of worst elements says everything a chart could


def copy_assets(run_dir: Path) -> None:
    """Put the chart scripts beside the report (once per run directory)."""
    target = run_dir / "assets"
    target.mkdir(exist_ok=True)
    for name in (*SCRIPTS, "LICENSES.txt"):
        if not (target / name).exists():
            shutil.copyfile(ASSETS / name, target / name)


def comparison_charts(reference: np.ndarray, candidate: np.ndarray, title: str) -> dict[str, dict[str, Any]]:
    """{"histogram": spec, "scatter": spec, "heatmap": spec?} for a same-shape float pair; {} otherwise.

    Integer outputs are indices, classes or counts: a scatter or an error map of them says nothing (an
    index that moved by 40 is not "more wrong" than one that moved by 1), so they get the tables only,
    as do outputs too small to need a picture.
    """
    if (
        reference.shape != candidate.shape
        or reference.size < MIN_ELEMENTS
        or reference.dtype.kind != "f"
        or candidate.dtype.kind != "f"
    ):
        return {}
    with np.errstate(all="ignore"):
        ref = reference.astype(np.float64)
        cand = candidate.astype(np.float64)
        diff = np.abs(ref - cand)
        charts = {"histogram": _histogram(diff, title), "scatter": _scatter(ref, cand, title)}
        plane = _plane(diff)
        if plane is not None:
            charts["heatmap"] = _heatmap(plane, title)
    return charts


def _spec(title: str, **body: Any) -> dict[str, Any]:
    return {"title": {"text": title, "fontSize": 11}, **SIZE, **body}  # vega-embed's default mode is Vega-Lite


def _round(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(f"{v:.4g}") for v in values.tolist()]


def _round_down(values: np.ndarray) -> list[float]:
    """Four significant digits, never above the value (4 digits move it by at most 5e-4 relative)."""
    return [float(f"{v * (1 - 1e-3):.4g}") for v in values.tolist()]


def _round_up(values: np.ndarray) -> list[float]:
    return [float(f"{v * (1 + 1e-3):.4g}") for v in values.tolist()]


def _histogram(diff: np.ndarray, title: str) -> dict[str, Any]:
    finite = diff[np.isfinite(diff)]
    positive = finite[finite > 0]
    zeros = int((finite == 0).sum())
    rows = []
    if positive.size:
        # Edges a hair outside [min, max], so rounding for the spec can never push the smallest or largest
        # error out of every bin (all-equal errors used to give an empty chart).
        low, high = np.log10(positive.min()) - 0.01, np.log10(positive.max()) + 0.01
        edges = np.logspace(low, max(high, low + 1), BINS + 1)
        counts, edges = np.histogram(positive, bins=edges)
        rows = [
            {"from": a, "to": b, "count": int(n)}
            for a, b, n in zip(_round_down(edges[:-1]), _round_up(edges[1:]), counts)
            if n
        ]
    return _spec(
        f"{title}: |reference − candidate| ({zeros} exact)",
        data={"values": rows},
        mark={"type": "rect", "color": "#cf222e"},
        encoding={
            "x": {"field": "from", "type": "quantitative", "scale": {"type": "log"}, "title": "|Δ|"},
            "x2": {"field": "to"},
            "y": {"field": "count", "type": "quantitative", "title": "elements"},
            "y2": {"datum": 0},
        },
    )


def _scatter(ref: np.ndarray, cand: np.ndarray, title: str) -> dict[str, Any]:
    r, c = ref.reshape(-1), cand.reshape(-1)
    if r.size > MAX_POINTS:
        index = np.linspace(0, r.size - 1, MAX_POINTS).astype(np.int64)
        r, c = r[index], c[index]
    keep = np.isfinite(r) & np.isfinite(c)
    points = [{"r": a, "c": b} for a, b in zip(_round(r[keep]), _round(c[keep]))]
    low = float(min(r[keep].min(), c[keep].min())) if keep.any() else 0.0
    high = float(max(r[keep].max(), c[keep].max())) if keep.any() else 1.0
    if high <= low:
        low, high = low - 1.0, high + 1.0
    # Both axes on one domain and the chart square: y = x is the diagonal, and a deviation reads as a distance.
    domain = {"domain": [low, high], "nice": False, "zero": False}
    side = min(SIZE["width"], SIZE["height"])
    spec = _spec(
        f"{title}: candidate against reference",
        layer=[
            {
                "data": {"values": [{"r": low, "c": low}, {"r": high, "c": high}]},
                "mark": {"type": "line", "color": "#8c959f"},
                "encoding": {
                    "x": {"field": "r", "type": "quantitative", "scale": domain},
                    "y": {"field": "c", "type": "quantitative", "scale": domain},
                },
            },
            {
                "data": {"values": points},
                "mark": {"type": "point", "filled": True, "size": 12, "opacity": 0.6},
                "encoding": {
                    "x": {"field": "r", "type": "quantitative", "title": "reference", "scale": domain},
                    "y": {"field": "c", "type": "quantitative", "title": "candidate", "scale": domain},
                },
            },
        ],
    )
    spec.update(width=side, height=side)
    return spec


def _plane(diff: np.ndarray) -> np.ndarray | None:
    """Where the error is, as a grid of at most GRID×GRID: max over leading axes, then max-pooled."""
    if diff.ndim < 2 or min(diff.shape[-2:]) < 2:
        return None
    plane = np.nan_to_num(diff, nan=np.inf).reshape(-1, *diff.shape[-2:]).max(axis=0)
    rows, cols = plane.shape
    fy, fx = -(-rows // GRID), -(-cols // GRID)
    padded = np.full((-(-rows // fy) * fy, -(-cols // fx) * fx), -np.inf)
    padded[:rows, :cols] = plane
    return padded.reshape(padded.shape[0] // fy, fy, padded.shape[1] // fx, fx).max(axis=(1, 3))


def _heatmap(plane: np.ndarray, title: str) -> dict[str, Any]:
    finite = plane[np.isfinite(plane)]
    top = float(finite.max()) if finite.size else 1.0
    cells = [
        {"row": int(i), "col": int(j), "err": v}
        for (i, j), v in zip(np.ndindex(plane.shape), _round(np.minimum(plane, top).reshape(-1)))
    ]
    return _spec(
        f"{title}: where |Δ| is (max over leading axes)",
        data={"values": cells},
        mark="rect",
        encoding={
            "x": {"field": "col", "type": "ordinal", "axis": {"labels": False, "ticks": False}},
            "y": {"field": "row", "type": "ordinal", "axis": {"labels": False, "ticks": False}},
            "color": {"field": "err", "type": "quantitative", "scale": {"scheme": "magma"}, "title": "|Δ|"},
        },
    )
