"""Pictures for the case page, drawn with matplotlib and embedded as PNG data URIs.

Three views of one comparison: a histogram of the absolute error on log-spaced bins, reference against
candidate as a scatter (sampled), and for 2-D and image-like outputs a heatmap of where the differences
are. Large tensors are sampled for drawing only; the numbers in the tables come from whole tensors.
"""

from __future__ import annotations

import base64
import io

import numpy as np

MAX_POINTS = 4000
FIGSIZE = (3.2, 2.4)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def comparison_charts(reference: np.ndarray, candidate: np.ndarray, title: str) -> dict[str, str]:
    """{"histogram": uri, "scatter": uri, "heatmap": uri?} for a same-shape numeric pair; {} otherwise."""
    if reference.shape != candidate.shape or reference.size == 0 or reference.dtype.kind not in "biuf" \
            or candidate.dtype.kind not in "biuf":
        return {}
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    with np.errstate(all="ignore"):
        diff = np.abs(ref - cand)
        drawings = {"histogram": lambda: _histogram(diff, title), "scatter": lambda: _scatter(ref, cand, title)}
        plane = _plane(diff)
        if plane is not None:
            drawings["heatmap"] = lambda: _heatmap(plane, title)
        charts = {}
        for kind, draw in drawings.items():
            try:
                charts[kind] = draw()
            except (ValueError, OverflowError, FloatingPointError):
                _pyplot().close("all")  # values matplotlib cannot scale (near float64's limits): no picture
        return charts


def _histogram(diff: np.ndarray, title: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    finite = diff[np.isfinite(diff)]
    positive = finite[finite > 0]
    zeros = int((finite == 0).sum())
    if positive.size:
        low, high = np.log10(positive.min()), np.log10(positive.max())
        bins = np.logspace(low, high if high > low else low + 1, 30)
        ax.hist(positive, bins=bins, color="#cf222e")
        ax.set_xscale("log")
    ax.set_xlabel("|reference - candidate|")
    ax.set_ylabel("elements")
    ax.set_title(f"{title}: error ({zeros} exact)", fontsize=9)
    return _png(fig)


def _scatter(ref: np.ndarray, cand: np.ndarray, title: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    r, c = ref.reshape(-1), cand.reshape(-1)
    if r.size > MAX_POINTS:
        index = np.linspace(0, r.size - 1, MAX_POINTS).astype(np.int64)
        r, c = r[index], c[index]
    keep = np.isfinite(r) & np.isfinite(c)
    ax.scatter(r[keep], c[keep], s=4, alpha=0.6, color="#0969da")
    if keep.any():
        low, high = float(min(r[keep].min(), c[keep].min())), float(max(r[keep].max(), c[keep].max()))
        ax.plot([low, high], [low, high], color="#8c959f", linewidth=0.8)
    ax.set_xlabel("reference")
    ax.set_ylabel("candidate")
    ax.set_title(f"{title}: values", fontsize=9)
    return _png(fig)


def _plane(diff: np.ndarray) -> np.ndarray | None:
    """A 2-D view of where the error is: the tensor itself if 2-D, else the max over leading axes."""
    if diff.ndim < 2 or min(diff.shape[-2:]) < 2:
        return None
    plane = np.nan_to_num(diff, nan=np.inf).reshape(-1, *diff.shape[-2:]).max(axis=0)
    return plane[:512, :512]


def _heatmap(plane: np.ndarray, title: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    finite = plane[np.isfinite(plane)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    image = ax.imshow(np.minimum(plane, top), cmap="magma", interpolation="nearest", aspect="auto", vmin=0,
                      vmax=top)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(f"{title}: where |Δ| is (max over leading axes)", fontsize=9)
    return _png(fig)
