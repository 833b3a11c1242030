"""Say who deviates: one execution provider, the exporter, or PyTorch eager itself.

Works per (probe, output) across every candidate of a case, with the float64
oracle as the arbiter of numbers. Each blame comes with the reason, appended
to the evidence, so it can be checked against the recorded numbers.
"""

from __future__ import annotations

import numpy as np

from .classify import Verdict, tolerance_for
from .recorded import Recorded

Key = tuple[str, str]
VALUE_LABELS = {"mismatch", "layout", "nonfinite", "shape", "nondeterministic"}
EAGER_WORSE_FACTOR = 3.0


def assign(verdicts: dict[str, dict[Key, Verdict]], rec: Recorded, reference: str, oracle: str | None,
           onnx_candidates: list[str]) -> None:
    """Fill ``blame`` for failing verdicts, in place. ``verdicts`` maps candidate -> (probe, output) -> verdict."""
    for candidate, by_key in verdicts.items():
        for key, verdict in by_key.items():
            if verdict.passed or verdict.blame is not None and verdict.label not in VALUE_LABELS:
                continue
            if verdict.label not in VALUE_LABELS:
                verdict.blame = verdict.blame or candidate
                continue
            verdict.blame, reason = _value_blame(candidate, key, verdicts, rec, reference, oracle, onnx_candidates)
            separator = " " if verdict.evidence.endswith(".") else ". "
            verdict.evidence += f"{separator}Blame: {verdict.blame}: {reason}."


def _value_blame(candidate: str, key: Key, verdicts: dict[str, dict[Key, Verdict]], rec: Recorded, reference: str,
                 oracle: str | None, onnx_candidates: list[str]) -> tuple[str, str]:
    probe, output = key
    ref = rec.array(reference, probe, output)
    cand = rec.array(candidate, probe, output)
    truth = rec.array(oracle, probe, output) if oracle else None
    if truth is not None and ref is not None and cand is not None and ref.shape == cand.shape == truth.shape:
        ref_err, cand_err = _rmse(ref, truth), _rmse(cand, truth)
        if ref_err > EAGER_WORSE_FACTOR * cand_err and ref_err > 0:
            return reference, (f"eager is farther from the float64 oracle (RMSE {ref_err:.3g}) than {candidate} "
                               f"({cand_err:.3g})")
    if candidate in onnx_candidates:
        others = [c for c in onnx_candidates if c != candidate and key in verdicts.get(c, {})]
        agreeing = [c for c in others if not verdicts[c][key].passed and _agree(rec, candidate, c, probe, output)]
        passing = [c for c in others if verdicts[c][key].passed]
        if passing:
            return candidate, f"{', '.join(passing)} ran the same ONNX graph and agrees with eager"
        if agreeing:
            return "exporter", (f"{candidate} and {', '.join(agreeing)} agree with each other on the same ONNX graph "
                                "but not with eager")
        if not others:
            return f"{candidate} or exporter", "only one ONNX runtime ran this graph, so the graph and the runtime " \
                                               "cannot be told apart (add ort-cuda or another ORT variant)"
        return candidate, "the ONNX runtimes disagree with each other as well as with eager"
    return candidate, "the reference and the oracle agree with each other, not with this backend"


def _agree(rec: Recorded, a: str, b: str, probe: str, output: str) -> bool:
    x, y = rec.array(a, probe, output), rec.array(b, probe, output)
    if x is None or y is None or x.shape != y.shape:
        return False
    rtol, atol = tolerance_for(x)
    return bool(np.allclose(x.astype(np.float64), y.astype(np.float64), rtol=max(rtol, 1e-4), atol=max(atol, 1e-5),
                            equal_nan=True))


def _rmse(values: np.ndarray, truth: np.ndarray) -> float:
    v, t = values.astype(np.float64), truth.astype(np.float64)
    mask = np.isfinite(v) & np.isfinite(t)
    return float(np.sqrt(np.mean((v[mask] - t[mask]) ** 2))) if mask.any() else 0.0
