"""Verdicts that need more than one probe: frozen inputs, shape specialisation, ties confirmed by the ramp.

Each rule reads the per-probe verdicts of one candidate and the recorded
arrays, and replaces a failing verdict with a more precise one when the
numbers across probes support it. The original evidence is kept in the text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..record.recorded import Recorded
from ..suite.probes import describe
from .classify import NOT_TIED, WRONG_VALUES, Verdict, passes
from .compare import format_value

Key = tuple[str, str]  # (probe, output); output "*" for a probe that failed as a whole


def apply(verdicts: dict[Key, Verdict], rec: Recorded, case: dict[str, Any], candidate: str, reference: str) -> None:
    ties_confirmed_by_ramp(verdicts, rec, reference)
    frozen_inputs(verdicts, rec, case, candidate, reference)
    shape_specialized(verdicts, rec)


def ties_confirmed_by_ramp(verdicts: dict[Key, Verdict], rec: Recorded, reference: str) -> None:
    """An index output wrong only on tied inputs is tie-breaking. Only outputs that eager's own ArgMax/ArgMin/
    TopK/Sort produced, or that eager gathered by their indices, qualify (see ``worker.eager_ranked``): an
    integer that is not an index (a count, a class flip of a thresholded value) that differs only on tie-rich
    inputs is wrong, and so is a float result (a mean of many equal values) — an accuracy problem, not a tie."""
    import json

    from ..record.names import EAGER_RANKED

    for (probe, output), verdict in list(verdicts.items()):
        if probe != "ties" or verdict.label not in WRONG_VALUES or NOT_TIED in verdict.notes:
            continue
        eager = rec.row(EAGER_RANKED, probe, output)
        if not predates_eager_evidence(rec):
            if eager is None or json.loads(eager["about"] or "{}").get("kind") not in ("index", "gathered"):
                continue
            made_by = f"eager's own {json.loads(eager['about']).get('op')} is behind this output"
        else:  # recorded before eager's evidence existed: judged as then (integer outputs), and said so
            values = rec.array(reference, probe, output)
            if values is None or values.dtype.kind not in "iu":
                continue
            made_by = "an integer output (this run predates eager's index evidence: rerun to check it is an index)"
        ramp = verdicts.get(("ramp", output))
        if ramp is None or not ramp.passed:
            continue
        verdicts[(probe, output)] = Verdict(
            "tie_break",
            (
                f"differs only on the tie-rich probe, and {made_by}; on the same inputs with a tie-free ramp added it "
                "is "
                f"{ramp.label}. "
                f"Tie-rich probe: {verdict.evidence}"
            ),
            verdict.metrics,
        )


def predates_eager_evidence(rec: Recorded) -> bool:
    """A case recorded before difftest gathered eager's own index evidence: no ``eager-ranked`` row and no
    ``reseeded`` one (a run since then always reruns eager with another seed). Such runs re-judge as they were
    judged when they were made, and say so."""
    from ..record.names import EAGER_RANKED, RESEEDED

    return not (rec.has(EAGER_RANKED) or rec.has(RESEEDED))


def frozen_inputs(
    verdicts: dict[Key, Verdict], rec: Recorded, case: dict[str, Any], candidate: str, reference: str
) -> None:
    """Wrong only on samples whose values differ from base, with an input the graph cannot see changing, or
    after the exporter warned that its trace froze a data-dependent decision (control flow)."""
    from ..export.exporter import traced_warnings
    from ..suite.probes import DISTRIBUTION_PROBES, VALUE_PROBES

    dropped = list(case.get("dropped_inputs") or [])
    traced = traced_warnings(case.get("export_warnings") or [])
    baked = "bake_kwargs" in (case.get("rewrites") or [])
    for (probe, output), verdict in list(verdicts.items()):
        if probe in ("base", "shape") or verdict.label not in WRONG_VALUES:
            continue
        base = verdicts.get(("base", output))
        if base is None or not base.passed:
            continue
        ref_base, ref_probe = rec.array(reference, "base", output), rec.array(reference, probe, output)
        cand_base, cand_probe = rec.array(candidate, "base", output), rec.array(candidate, probe, output)
        if any(a is None for a in (ref_base, ref_probe, cand_base, cand_probe)):
            continue
        ref_change, cand_change = _change(ref_base, ref_probe), _change(cand_base, cand_probe)
        changed = [n for n in dropped if _input_changed(rec, n, probe)]
        blame = "exporter"
        if changed:
            why = f"the exported graph dropped input(s) {', '.join(changed)}, so it cannot react to them"
            if baked:
                why += " (the case exports its tensor kwargs as constants: bake_kwargs=True)"
                blame = "case:bake_kwargs"
        elif traced and probe in (*VALUE_PROBES, *DISTRIBUTION_PROBES):
            why = (
                f"the exporter warned that its trace may not generalize ({traced[0]}); a data-dependent decision "
                "was frozen into the graph, which keeps the branch the traced inputs took"
            )
        elif probe in VALUE_PROBES and cand_change == 0.0 and ref_change:
            why = "the candidate's output did not change at all when the inputs did"
        else:
            continue
        verdicts[(probe, output)] = Verdict(
            "frozen_input",
            (
                f"{why}: agrees on the base sample ({base.label}); on the {probe} sample ({describe(probe)}) the "
                f"reference output changed by up to {format_value(ref_change)} and the candidate's by "
                f"{format_value(cand_change)}. {verdict.evidence}"
            ),
            verdict.metrics,
            blame=blame,
        )


def _input_changed(rec: Recorded, name: str, probe: str) -> bool:
    before, after = rec.array("input", "base", name), rec.array("input", probe, name)
    return before is not None and after is not None and not np.array_equal(before, after)


def shape_specialized(verdicts: dict[Key, Verdict], rec: Recorded) -> None:
    base = [v for (probe, _), v in verdicts.items() if probe == "base"]
    if not base or not all(v.passed for v in base):
        return
    shapes = _input_shapes(rec, "shape")
    traced = _input_shapes(rec, "base")
    for (probe, output), verdict in list(verdicts.items()):
        if probe != "shape" or passes(verdict.label) or verdict.label in ("crash", "timeout"):
            continue
        verdicts[(probe, output)] = Verdict(
            "shape_specialized",
            (
                f"correct on the traced shapes ({traced}: {base[0].label}) but {verdict.label} on other allowed shapes "
                f"({shapes}): the export froze a size. {verdict.evidence}"
            ),
            verdict.metrics,
            blame="exporter",
        )


def _change(before: np.ndarray, after: np.ndarray) -> float | None:
    if before.shape != after.shape:
        return float("inf")
    with np.errstate(invalid="ignore"):
        diff = np.abs(before.astype(np.float64) - after.astype(np.float64))
    return float(np.nan_to_num(diff, nan=0.0).max()) if diff.size else 0.0


def _input_shapes(rec: Recorded, probe: str) -> str:
    names = rec.outputs("input", probe)
    return ", ".join(f"{n}{list(rec.row('input', probe, n)['shape'])}" for n in names) or "unknown"
