"""Models that sample: outputs judged by what sampling keeps, on evidence the candidate did not produce.

difftest seeds every eager run identically, so eager's reruns never vary and a model that samples (bernoulli,
rand_like, randint masks, dropout in training mode, multinomial) would have its one draw held against another
runtime's draw element by element. The worker therefore runs the reference once more with another seed (the
pseudo-backend ``reseeded``): an output that changes there comes from the model's own randomness. The exported
graph's sampling nodes (``random_ops`` of the export: RandomNormal, RandomUniform, their ``*Like`` forms,
Multinomial, Bernoulli) are named in the evidence, and stand in for the reseeded run in runs recorded before it
existed. A candidate's own rerun spread is never the evidence: it is what is under test.

Such an output is compared by what two draws of the same distribution share: shape and dtype exactly; no NaN or
±Inf where eager has none; the value range within eager's two draws' range (widened by a quarter of its span);
the mean and the standard deviation within sampling error, whose size comes from eager's two draws (the spread
of their difference over √n, plus twice the gap between the two draws' own statistics). ``nondeterministic``
(a warning) when all agree; ``shape`` or ``mismatch`` when one does not, saying which.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..record.names import RESEEDED
from ..record.recorded import Recorded
from .classify import Verdict, tolerance_for
from .compare import format_value

RANGE_SLACK = 0.25  # of eager's span: how far past eager's two draws a third draw may reach
SAMPLING_SIGMAS = 5.0  # a statistic this many standard errors away is not sampling error
RULE = "random model"


def reseeded_change(rec: Recorded, reference: str, probe: str, output: str) -> tuple[int, int, float] | None:
    """(elements changed, elements, max |Δ|) when eager's output changes under another seed; None when it does
    not (or the reseeded run was not recorded)."""
    ref, again = rec.array(reference, probe, output), rec.array(RESEEDED, probe, output)
    if ref is None or again is None:
        return None
    if ref.shape != again.shape:
        return (int(max(ref.size, again.size)), int(max(ref.size, again.size)), float("inf"))
    a, b = _wide(ref), _wide(again)
    with np.errstate(invalid="ignore"):
        changed = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    if not changed.any():
        return None
    with np.errstate(invalid="ignore"):
        largest = float(np.nanmax(np.abs(a - b)[changed])) if np.isfinite(a[changed]).any() else float("inf")
    return int(changed.sum()), int(ref.size), largest


def graph_random_ops(case: dict[str, Any], export: str | None) -> list[str]:
    exports = case.get("exports") or {}
    info = exports.get(export or "", {}) if export else {}
    if not info and exports:  # an eager candidate: the case's own export says what the model computes
        info = exports.get(case.get("exporter") or "dynamo", {})
    return list(info.get("random_ops") or [])


def is_random(rec: Recorded, reference: str, probe: str, output: str) -> bool:
    return reseeded_change(rec, reference, probe, output) is not None


def apply(
    found: dict[tuple[str, str], Verdict],
    rec: Recorded,
    reference: str,
    candidate: str,
    random_ops: list[str],
    tolerances: Any = None,
) -> None:
    """Replace the verdicts of outputs that come from sampling with a judgement by distribution, in place."""
    reseeded = rec.has(RESEEDED)
    for (probe, output), verdict in list(found.items()):
        if output == "*" or verdict.label in ("exact", "invalid_probe") or verdict.label not in _JUDGED:
            continue
        change = reseeded_change(rec, reference, probe, output)
        if change is None and (reseeded or not random_ops or verdict.passed):
            continue  # eager does not sample this output (or, in an old run, nothing says it might)
        ref, again, cand = (
            rec.array(reference, probe, output),
            rec.array(RESEEDED, probe, output),
            rec.array(candidate, probe, output),
        )
        if ref is None or cand is None:
            continue
        rtol, atol = tolerance_for(ref, *(tolerances(output) if tolerances else (None, None)))
        found[(probe, output)] = judge_distribution(
            ref, again if change is not None else None, cand, rtol, atol, _why_random(change, random_ops), verdict
        )


_JUDGED = {"numeric", "mismatch", "nonfinite", "layout", "shape", "tie_break", "nondeterministic", "dtype"}


def _why_random(change: tuple[int, int, float] | None, random_ops: list[str]) -> str:
    parts = []
    if change is not None:
        changed, total, largest = change
        parts.append(
            f"eager's own output changes when it runs again with another seed ({changed} of {total} "
            f"elements, max |Δ| {format_value(largest)})"
        )
    if random_ops:
        shown = ", ".join(random_ops[:3]) + (f" and {len(random_ops) - 3} more" if len(random_ops) > 3 else "")
        parts.append(f"the exported graph samples ({shown})")
    return (
        "The model samples: " + " and ".join(parts) + ", so draws are compared by distribution, not element by element"
    )


def judge_distribution(
    ref: np.ndarray, again: np.ndarray | None, cand: np.ndarray, rtol: float, atol: float, why: str, before: Verdict
) -> Verdict:
    """The verdict for a sampled output: ``nondeterministic`` when the candidate's draw looks like eager's."""
    if cand.shape != ref.shape:
        return Verdict(
            "shape",
            f"{why}; but the shapes differ: reference {list(ref.shape)}, candidate {list(cand.shape)}.",
            before.metrics,
        )
    if cand.dtype != ref.dtype:
        return Verdict(
            "mismatch", f"{why}; but the dtypes differ: reference {ref.dtype}, candidate {cand.dtype}.", before.metrics
        )
    draws = [_wide(ref)] + ([_wide(again)] if again is not None and again.shape == ref.shape else [])
    c = _wide(cand)
    if c.size == 0:
        return Verdict("nondeterministic", f"{why}; the output is empty on both.", before.metrics, rule=RULE)
    problems, facts = [], []
    eager_nonfinite = any((~np.isfinite(d)).any() for d in draws)
    if (~np.isfinite(c)).any() and not eager_nonfinite:
        problems.append(
            f"the candidate has {int((~np.isfinite(c)).sum())} NaN/±Inf values, eager none in {len(draws)} draw(s)"
        )
    finite = [d[np.isfinite(d)] for d in draws]
    cf = c[np.isfinite(c)]
    if cf.size and all(f.size for f in finite):
        lo, hi = min(float(f.min()) for f in finite), max(float(f.max()) for f in finite)
        slack = RANGE_SLACK * (hi - lo) + atol + rtol * max(abs(lo), abs(hi))
        if ref.dtype.kind in "iub":
            slack = float(np.ceil(slack))
        fact = (
            f"range [{format_value(float(cf.min()))}, {format_value(float(cf.max()))}] against eager's "
            f"[{format_value(lo)}, {format_value(hi)}] (±{format_value(slack)})"
        )
        (problems if cf.min() < lo - slack or cf.max() > hi + slack else facts).append(fact)
        n = cf.size
        means, stds = [float(f.mean()) for f in finite], [float(f.std()) for f in finite]
        if len(finite) == 2 and finite[0].size == finite[1].size == draws[0].size:
            noise = float(np.std(draws[0] - draws[1]))  # the deterministic part cancels: what sampling adds
        else:
            noise = stds[0]  # one draw only: its whole spread (a wider allowance)
        mean, std = float(np.mean(means)), float(np.mean(stds))
        mean_allowed = SAMPLING_SIGMAS * noise / np.sqrt(n) + 2 * (max(means) - min(means)) + atol + rtol * abs(mean)
        fact = (
            f"mean {format_value(float(cf.mean()))} against eager's {format_value(mean)} "
            f"(±{format_value(mean_allowed)})"
        )
        (problems if abs(float(cf.mean()) - mean) > mean_allowed else facts).append(fact)
        std_allowed = (
            SAMPLING_SIGMAS * max(noise, std) / np.sqrt(2 * n) + 2 * (max(stds) - min(stds)) + atol + rtol * std
        )
        fact = f"std {format_value(float(cf.std()))} against eager's {format_value(std)} (±{format_value(std_allowed)})"
        (problems if abs(float(cf.std()) - std) > std_allowed else facts).append(fact)
    basis = "eager's two draws (seeds 0 and 1)" if len(draws) == 2 else "eager's one draw"
    if problems:
        return Verdict(
            "mismatch",
            f"{why}; the candidate's draw is not one of the same distribution: "
            f"{'; '.join(problems)}"
            + (f" (agreeing: {'; '.join(facts)})" if facts else "")
            + f". Sampling error from {basis}. Element by element: {before.evidence}",
            before.metrics,
        )
    return Verdict(
        "nondeterministic",
        f"{why}; shape {list(ref.shape)} and dtype {ref.dtype} equal, "
        f"{'; '.join(facts)}: within sampling error from {basis}.",
        before.metrics,
        rule=RULE,
    )


def _wide(a: np.ndarray) -> np.ndarray:
    """Flat float64 values for the statistics (a complex output: its real and imaginary parts, both compared)."""
    a = np.asarray(a)
    if a.dtype.kind == "c":
        return np.concatenate([a.real.astype(np.float64).reshape(-1), a.imag.astype(np.float64).reshape(-1)])
    return a.astype(np.float64).reshape(-1)
