"""Outputs too large to store whole are compared whole, in the worker, where they exist.

The tensors table keeps an output up to ``Task.max_tensor_bytes`` (256 MiB); a larger one is stored as an even
sample, for charts. A verdict must never rest on that sample alone: a fault in every odd element is invisible
to a sample of even ones. So the worker keeps the reference's full output of each probe in a scratch file
(memory-mapped, deleted when the case ends) and compares every candidate's full output with it, in chunks:
bit-identity, and the tolerance statistics (elements beyond rtol/atol, max and mean |Δ|). The result goes into
the candidate's row (its ``full`` column, ``record.columns.FULL_COMPARISON``); the judge uses it (see
``judge.judge_sampled``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_BYTES = 64 * 2**20


class FullComparisons:
    def __init__(self, reference: str, max_bytes: int, scratch: Path, tolerances: dict[str, Any]):
        self.reference, self.max_bytes, self.scratch, self.tolerances = reference, max_bytes, scratch, tolerances
        self.saved: dict[tuple[str, str], Path] = {}

    def compare(self, backend: str, probe: str, output: str, rerun: int, array: np.ndarray) -> dict[str, Any] | None:
        """The row's ``full`` for an output too large to store whole (``columns.FULL_COMPARISON``), or None for
        one stored whole."""
        if array.nbytes <= self.max_bytes:
            return None
        if backend == self.reference:
            if rerun == 0:
                self.scratch.mkdir(parents=True, exist_ok=True)
                path = self.scratch / f"{len(self.saved)}.npy"
                np.save(path, np.ascontiguousarray(array))
                self.saved[(probe, output)] = path
            return {"role": "reference", "count": int(array.size)}
        path = self.saved.get((probe, output))
        if path is None:
            return {
                "against": None,
                "count": int(array.size),
                "reason": "the reference's full output was not available",
            }
        reference = np.load(path, mmap_mode="r")
        return compare_in_full(reference, array, *self._tolerance(reference, output))

    def _tolerance(self, reference: np.ndarray, output: str) -> tuple[float, float]:
        from ..judge.classify import tolerance_for
        from ..judge.classify import output_tolerance

        return tolerance_for(reference, *output_tolerance(self.tolerances, output))

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def compare_in_full(reference: np.ndarray, candidate: np.ndarray, rtol: float, atol: float) -> dict[str, Any]:
    """Bit-identity and tolerance statistics over every element, in chunks."""
    from ..judge.compare import bit_identical, metrics

    result: dict[str, Any] = {
        "against": "reference",
        "count": int(candidate.size),
        "rtol": float(rtol),
        "atol": float(atol),
    }
    if reference.shape != candidate.shape:
        result.update(identical=False, shape=list(reference.shape))
        return result
    flat_ref, flat_cand = reference.reshape(-1), np.ascontiguousarray(candidate).reshape(-1)
    step = max(1, CHUNK_BYTES // max(1, candidate.dtype.itemsize))
    identical = reference.dtype == candidate.dtype and all(
        bit_identical(np.asarray(flat_ref[i : i + step]), flat_cand[i : i + step])
        for i in range(0, flat_ref.size, step)
    )
    result["identical"] = bool(identical)
    if identical:
        result.update(mismatched=0, max_abs=0.0, mean_abs=0.0)
        return result
    m = metrics(np.asarray(reference), candidate, rtol, atol)
    result.update(
        mismatched=int(m.mismatched),
        max_abs=float(m.max_abs),
        mean_abs=float(m.mean_abs),
        worst_index=[int(i) for i in m.worst_index or ()],
    )
    return result
