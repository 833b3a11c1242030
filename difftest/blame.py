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
           onnx_exports: dict[str, str]) -> None:
    """Fill ``blame`` for failing verdicts, in place.

    ``verdicts`` maps candidate -> (probe, output) -> verdict; ``onnx_exports`` maps each ONNX candidate to the
    name of the export it ran, so candidates on the same graph can be held against each other and variant
    settings (opt, tf32, exporter) serve as controls.
    """
    for candidate, by_key in verdicts.items():
        for key, verdict in by_key.items():
            if verdict.passed or verdict.blame is not None and verdict.label not in VALUE_LABELS:
                continue
            if verdict.label not in VALUE_LABELS:
                verdict.blame = verdict.blame or candidate
                continue
            tf32 = _tf32_control(candidate, key, verdicts)
            if tf32 is not None:
                verdict.label, verdict.blame = "numeric", None
                verdict.evidence += f" Counted as numeric: {tf32}."
                continue
            verdict.blame, reason = _value_blame(candidate, key, verdicts, rec, reference, oracle, onnx_exports)
            separator = " " if verdict.evidence.endswith(".") else ". "
            verdict.evidence += f"{separator}Blame: {verdict.blame}: {reason}."


def _siblings(candidate: str, names: list[str], key: str) -> list[tuple[str, str | None]]:
    """Candidates that differ from ``candidate`` only in setting ``key``: (name, their value)."""
    from .candidates import parse

    me = parse(candidate)
    found = []
    for name in names:
        if name == candidate:
            continue
        other = parse(name)
        if other.backend == me.backend and other.without(key) == me.without(key):
            found.append((name, other.get(key)))
    return found


def _tf32_control(candidate: str, key: Key, verdicts: dict[str, dict[Key, Verdict]]) -> str | None:
    from .candidates import parse

    if parse(candidate).get("tf32") == "0":
        return None
    for name, value in _siblings(candidate, list(verdicts), "tf32"):
        other = verdicts[name].get(key)
        if value == "0" and other is not None and other.passed:
            return f"the gap closes with TF32 off ({name}: {other.label}); TF32 matmul is reduced precision by design"
    return None


def _value_blame(candidate: str, key: Key, verdicts: dict[str, dict[Key, Verdict]], rec: Recorded, reference: str,
                 oracle: str | None, onnx_exports: dict[str, str]) -> tuple[str, str]:
    from .candidates import parse

    probe, output = key
    ref = rec.array(reference, probe, output)
    cand = rec.array(candidate, probe, output)
    truth = rec.array(oracle, probe, output) if oracle else None
    if truth is not None and ref is not None and cand is not None and ref.shape == cand.shape == truth.shape:
        ref_err, cand_err = _rmse(ref, truth), _rmse(cand, truth)
        if ref_err > EAGER_WORSE_FACTOR * cand_err and ref_err > 0:
            return reference, (f"eager is farther from the float64 oracle (RMSE {ref_err:.3g}) than {candidate} "
                               f"({cand_err:.3g})")
    if candidate not in onnx_exports:
        return candidate, "the reference and the oracle agree with each other, not with this backend"
    names = list(verdicts)
    for name, value in _siblings(candidate, names, "opt"):
        other = verdicts[name].get(key)
        if other is not None and other.passed and value != parse(candidate).get("opt"):
            return "ort-optimizer", (f"the same graph with graph optimizations at {value} ({name}) agrees with eager: "
                                     "an ORT graph optimization changes the result")
    for name, value in _siblings(candidate, names, "exporter"):
        other = verdicts[name].get(key)
        if other is not None and other.passed:
            mine = onnx_exports[candidate].split("+")[0]
            return f"exporter:{mine}", f"the {value or 'default'} exporter's graph ({name}) agrees with eager"
    same_graph = [c for c in onnx_exports if c != candidate and onnx_exports[c] == onnx_exports[candidate]
                  and parse(c).backend != parse(candidate).backend and key in verdicts.get(c, {})]
    passing = [c for c in same_graph if verdicts[c][key].passed]
    agreeing = [c for c in same_graph if not verdicts[c][key].passed and _agree(rec, candidate, c, probe, output)]
    if passing:
        return candidate, f"{', '.join(passing)} ran the same ONNX graph and agrees with eager"
    if agreeing:
        return "exporter", (f"{candidate} and {', '.join(agreeing)} agree with each other on the same ONNX graph "
                            "but not with eager")
    if not same_graph:
        return f"{candidate} or exporter", ("only one ONNX runtime ran this graph, so the graph and the runtime "
                                            "cannot be told apart (add ort-cuda or an ort-cpu[opt=disable] control)")
    return candidate, "the ONNX runtimes disagree with each other as well as with eager"


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
