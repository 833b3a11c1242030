"""Where a discrepancy lives, relative to the case's mask inputs (attention masks, padding masks).

A difference confined to padding positions (left padding in a batch of sequences: the logits of pad tokens)
is often what a deployment engineer decides does not matter, and a real finding everywhere else. When a case
has mask-like inputs (booleans, or integers that are all 0 and 1) whose shape lines up with an output's leading
dimensions, the evidence says how many mismatching elements sit where the mask is 0. A case can also declare
an output mask (``output_masks={"logits": "attention_mask"}``): those positions are then compared apart,
reported, and not judged (see ``judge``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .compare import within


def declaration_problem(
    output_masks: dict[str, str], inputs: dict[str, np.ndarray], outputs: dict[str, tuple[int, ...]]
) -> str | None:
    """What is wrong with a case's ``output_masks`` (None when every entry names an output, a mask input, and a
    mask whose shape is the output's leading dimensions): a declaration that matched nothing would otherwise
    leave the padding judged, and the case fail for a reason its author thought was declared away."""
    for output, name in output_masks.items():
        if output not in outputs:
            return (
                f"output_masks names output {output!r}, but the case's outputs are "
                f"{', '.join(map(repr, outputs)) or '(none)'} (flattened names: a ModelOutput's logits are "
                "'output_logits')"
            )
        if name not in inputs:
            return (
                f"output_masks[{output!r}] names input {name!r}, but the case's tensor inputs are "
                f"{', '.join(map(repr, inputs)) or '(none)'}"
            )
        values = inputs[name]
        if not is_mask(values):
            return (
                f"output_masks[{output!r}]: input {name!r} is not a mask (it holds values other than 0 and 1, "
                f"dtype {values.dtype})"
            )
        if broadcast_mask(values, tuple(outputs[output])) is None:
            return (
                f"output_masks[{output!r}]: mask {name!r} of shape {list(values.shape)} does not line up with "
                f"the output's shape {list(outputs[output])} (the mask's shape must be the output's leading "
                "dimensions)"
            )
    return None


def declared_mask(
    rec: Any, output_masks: dict[str, str] | None, probe: str, output: str, shape: tuple[int, ...]
) -> tuple[str, np.ndarray] | None:
    """(mask input name, where it is 1 over an output of ``shape``) when the case declared this output's padding
    ignorable (``output_masks``), as the verdict and blame both read it."""
    name = (output_masks or {}).get(output)
    if not name:
        return None
    values = rec.array("input", probe, name)
    keep = broadcast_mask(values, shape) if values is not None else None
    return (name, keep) if keep is not None else None


def is_mask(values: np.ndarray) -> bool:
    if values.dtype == np.bool_:
        return True
    if values.dtype.kind not in "iuf" or values.size == 0:
        return False
    unique = np.unique(values)
    return len(unique) <= 2 and set(unique.tolist()) <= {0, 1}


def broadcast_mask(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The mask (True where it is 1) broadcast over an output's shape, when its shape is the output's leading
    dimensions; None when it does not line up."""
    if values.ndim == 0 or values.ndim > len(shape) or tuple(shape[: values.ndim]) != tuple(values.shape):
        return None
    keep = values.astype(bool).reshape(values.shape + (1,) * (len(shape) - values.ndim))
    return np.broadcast_to(keep, shape)


def where_mismatches_are(
    rec: Any, probe: str, reference: np.ndarray, candidate: np.ndarray, rtol: float | None, atol: float | None
) -> str | None:
    """A sentence relating the mismatching elements to the mask inputs they line up with, or None."""
    from .classify import tolerance_for

    if reference.shape != candidate.shape or reference.size == 0:
        return None
    r, a = tolerance_for(reference, rtol, atol)
    bad = ~within(reference, candidate, r, a)
    total = int(bad.sum())
    if not total:
        return None
    sentences = []
    for name, keep in _probe_masks(rec, probe, reference.shape):
        at_zero = int((bad & ~keep).sum())
        if at_zero == total:
            sentences.append(f"all {total} mismatching elements are at positions where {name} is 0")
        elif at_zero:
            sentences.append(f"{at_zero} of the {total} mismatching elements are at positions where {name} is 0")
        else:
            sentences.append(f"none of the {total} mismatching elements is where {name} is 0")
    return ("Where: " + "; ".join(sentences) + ".") if sentences else None


def padding_only(
    rec: Any, probe: str, reference: np.ndarray, candidate: np.ndarray, rtol: float | None, atol: float | None
) -> list[str]:
    """The mask inputs (recorded as ``input`` rows of this probe) where every mismatching element sits at a 0: if
    those positions are padding, ``output_masks={output: name}`` declares them ignorable."""
    from .classify import tolerance_for

    if reference.shape != candidate.shape or reference.size == 0:
        return []
    bad = ~within(reference, candidate, *tolerance_for(reference, rtol, atol))
    if not bad.any():
        return []
    return [name for name, keep in _probe_masks(rec, probe, reference.shape) if keep.any() and not (bad & keep).any()]


def _probe_masks(rec: Any, probe: str, shape: tuple[int, ...]) -> list[tuple[str, np.ndarray]]:
    """(name, where it is nonzero broadcast to ``shape``) for every mask input of the probe that lines up."""
    found = []
    for name in rec.outputs("input", probe):
        values = rec.array("input", probe, name)
        if values is None or not is_mask(values):
            continue
        keep = broadcast_mask(values, shape)
        if keep is not None:
            found.append((name, keep))
    return found
