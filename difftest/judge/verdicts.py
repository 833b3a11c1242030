"""From the recorded tables to comparisons: every case × probe × output × candidate classified and blamed.

Reads only the ``runs``, ``cases`` and ``tensors`` tables, so an old run can be re-judged by a newer classifier
without running a model. What the verdicts mean for the run (held against the cases' expectations) is
``expectations``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..export.messages import headline
from ..backends.candidates import USER_FILE
from ..record.recorded import Recorded
from ..record.tables import read_table, row_dicts
from ..suite.probes import SYNTHETIC_PROBES
from . import blame, masks, next_step, probe_rules, randomness, vocabulary
from .classify import Verdict, classify, output_tolerance, tolerance_for
from .compare import STATISTICS, as_float64, bit_identical, error_statistics, within
from .ties import RankedValues

BARE_ORACLE = "onnx-ref-fp64"  # a bare ONNX file's oracle: its graph widened to float64 (``worker.bare_onnx``)


def judge_run(run_dir: Path) -> list[dict[str, Any]]:
    """Comparison rows for every case × probe × output × candidate of a stored run."""
    import polars as pl

    from ..record.names import slug
    from ..record.tables import case_part

    runs = row_dicts(read_table(run_dir, "runs"), "runs")[0]
    cases = read_table(run_dir, "cases")
    tensors = None  # the whole table, read only for runs without per-case parts (merged runs)
    context = RunContext(
        run=runs["run"],
        reference=runs["reference"],
        oracle=runs.get("oracle"),
        candidates=[b for b in runs["backends_requested"] if b != runs["reference"]],
        skipped=(runs["backends_skipped"] or {}),
    )
    rows: list[dict[str, Any]] = []
    for case in row_dicts(cases, "cases"):
        part = case_part(run_dir, "tensors", slug(case["case"]))  # one case in memory at a time
        if part is None:
            tensors = read_table(run_dir, "tensors") if tensors is None else tensors
            part = tensors.filter(pl.col("case") == case["case"])
        rows.extend(judge_case(case, row_dicts(part, "tensors"), context))
    return rows


@dataclass
class RunContext:
    run: str
    reference: str
    candidates: list[str]
    skipped: dict[str, str]
    oracle: str | None = None


def judge_case(case: dict[str, Any], tensors: list[dict[str, Any]], context: RunContext) -> list[dict[str, Any]]:
    """Classify every candidate's outputs of one case against the reference, then across probes, then blame."""
    from ..backends.candidates import case_export_name

    reference = case.get("reference") or context.reference  # "recorded" for ONNX test folders
    base = {"run": context.run, "case": case["case"], "reference": reference}
    skipped = context.skipped
    if case["status"] != "ok":
        failure = _case_failure(case, reference)
        return [
            comparison_row(
                base,
                c,
                Verdict("skipped", skipped[c]) if c in skipped else failure,
                "*",
                "*",
                None if c in skipped else case["stage"],
            )
            for c in context.candidates
        ]
    if reference != context.reference and reference != "recorded":
        # A bare ONNX file: its reference is a runtime, its oracle the graph in float64 (see ``worker.bare_onnx``).
        context = dataclasses.replace(context, oracle=BARE_ORACLE)
    # Controls the worker ran for failing candidates are judged like candidates (blame reads them) but never
    # count as results of their own (see ``outcomes``).
    controls = [c for c in case_controls(case) if c not in context.candidates]
    candidates = [c for c in list(context.candidates) + controls if c != reference]
    rec = Recorded(tensors)
    export_of = {c: name for c in candidates if (name := case_export_name(case, c))}
    verdicts: dict[str, dict[tuple[str, str], Verdict]] = {}
    stages: dict[tuple[str, str, str], str | None] = {}
    for candidate in candidates:
        found: dict[tuple[str, str], Verdict] = {}
        verdicts[candidate] = found
        whole = rec.failure(candidate)
        if candidate in skipped:
            found[("*", "*")] = Verdict("skipped", skipped[candidate])
        elif whole is not None:
            found[("*", "*")] = _stage_verdict(whole, candidate)
            stages[(candidate, "*", "*")] = whole["stage"]
        elif not rec.has(candidate):
            found[("*", "*")] = Verdict("runtime_error", "no results recorded for this backend", blame=candidate)
        else:
            _judge_candidate(case, rec, context, reference, candidate, found, stages, export_of.get(candidate))
    if reference in context.candidates:
        verdicts[reference] = {
            ("*", "*"): Verdict(
                "skipped",
                (
                    f"not applicable: {reference} is this case's reference (a bare ONNX file has no PyTorch model); "
                    "the "
                    "other candidates are judged against it"
                ),
            )
        }
    _check_nothing_lost(tensors, verdicts, reference, [c for c in context.candidates if c != reference], case, stages)
    blame.assign(
        verdicts, rec, reference, context.oracle, {c: export_of[c] for c in export_of if c not in skipped}, case
    )
    next_step.apply(verdicts, case, reference)
    return [
        comparison_row(base, candidate, verdict, probe, output, stages.get((candidate, probe, output)))
        for candidate, found in verdicts.items()
        for (probe, output), verdict in found.items()
    ]


def _check_nothing_lost(
    tensors: list[dict[str, Any]],
    verdicts: dict[str, dict[tuple[str, str], Verdict]],
    reference: str,
    candidates: list[str],
    case: dict[str, Any],
    stages: dict[tuple[str, str, str], str | None],
) -> None:
    """Every output of every probe the reference recorded is judged exactly once for each candidate (controls
    run on failing probes only and are not held to it); what is not becomes a failing "results lost" verdict."""
    from .completeness import lost_evidence, lost_results

    for candidate in candidates:
        found = verdicts.get(candidate, {})
        for key, why in lost_results(tensors, found, reference, candidate, list(case.get("outputs") or [])).items():
            found[key] = Verdict("crash", lost_evidence(why, candidate, found.get(key)), blame="difftest")
            stages[(candidate, *key)] = "judge"


def _judge_candidate(
    case: dict[str, Any],
    rec: Recorded,
    context: RunContext,
    reference: str,
    candidate: str,
    found: dict[tuple[str, str], Verdict],
    stages: dict[tuple[str, str, str], str | None],
    export: str | None,
) -> None:
    """Every probe of a candidate that ran, then the rules across probes (randomness, probe rules)."""
    from ..backends.candidates import ranked_source

    tolerances = case.get("tolerances") or {}
    own_export = (case.get("exports") or {}).get(export or "", {})
    # A bare ONNX file has no eager, so no independent tie evidence: the graph's own ranked values (made by a
    # runtime that may be the candidate) never excuse it, whatever the run's age.
    legacy = None if case.get("exporter") == USER_FILE else legacy_tie_evidence(rec, own_export)
    judging = _Judging(
        rec,
        context,
        reference,
        candidate,
        tolerances,
        found,
        stages,
        ranked_source(case, candidate),
        accumulation_source(case, candidate),
        legacy,
    )
    for probe in rec.probes(candidate):
        _judge_probe(judging, probe)
    randomness.apply(
        found,
        rec,
        reference,
        candidate,
        randomness.graph_random_ops(case, export),
        lambda output: output_tolerance(tolerances, output),
    )
    probe_rules.apply(
        found,
        rec,
        {
            **case,
            "dropped_inputs": own_export.get("dropped_inputs", case.get("dropped_inputs")),
            "export_warnings": own_export.get("warnings", case.get("export_warnings")),
        },
        candidate,
        reference,
    )


@dataclass
class _Judging:
    """What judging one candidate of a case reads (its rows, the case's tolerances, where its evidence is) and
    writes (its verdicts and the stage each failure is at)."""

    rec: Recorded
    context: RunContext
    reference: str
    candidate: str
    tolerances: dict[str, Any]
    found: dict[tuple[str, str], Verdict]
    stages: dict[tuple[str, str, str], str | None]
    ranked_from: str | None  # the pseudo-backend holding the graph's ranked values behind index outputs
    accumulated_from: str | None  # the pseudo-backend holding Σ|x| behind accumulated outputs
    legacy: dict[str, int] | None  # a run recorded before eager's tie evidence existed: its unordered outputs


def _judge_probe(j: _Judging, probe: str) -> None:
    if _probe_failed(j, probe):
        return
    outputs = j.rec.outputs(j.reference, probe)
    siblings = {o: (j.rec.array(j.reference, probe, o), j.rec.array(j.candidate, probe, o)) for o in outputs}
    eager = eager_index_outputs(j.rec, probe, outputs)
    for output in outputs:
        ref, cand = siblings[output]
        if cand is None:
            j.found[(probe, output)] = Verdict("shape", f"the candidate has no output {output!r}")
            continue
        j.found[(probe, output)] = _judge_output(j, probe, output, ref, cand, siblings, eager)


def _probe_failed(j: _Judging, probe: str) -> bool:
    """A probe with nothing to compare (a stored output altered, the reference or the candidate failed on it):
    its verdict, and True."""
    rec, candidate, reference = j.rec, j.candidate, j.reference
    for backend in (reference, candidate):
        if (backend, probe) in rec.corrupted:
            j.found[(probe, "*")] = Verdict(
                "crash",
                (
                    f"the stored output {rec.corrupted[(backend, probe)]!r} of {backend} on this probe does not match "
                    "the "
                    "digest recorded when it was made: the run folder was altered or damaged, so nothing is judged "
                    "here; rerun the case"
                ),
                blame="difftest",
            )
            j.stages[(candidate, probe, "*")] = "record"
            return True
    ref_failure = rec.failure(reference, probe)
    if ref_failure is not None:
        j.stages[(candidate, probe, "*")] = ref_failure["stage"]
        if probe in SYNTHETIC_PROBES:
            j.found[(probe, "*")] = Verdict("invalid_probe", invalid_probe_evidence(probe, reference, ref_failure))
            return True
        j.found[(probe, "*")] = Verdict(
            "runtime_error",
            f"the reference ({reference}) failed at {ref_failure['stage']}: {ref_failure['message']}",
            blame=reference,
        )
        return True
    failure = rec.failure(candidate, probe)
    if failure is None:
        return False
    verdict = _stage_verdict(failure, candidate)
    if failure["rerun"]:  # the first run went through and a rerun failed: the candidate fails, saying which
        verdict.evidence = (
            f"run {failure['rerun'] + 1} of this probe failed although the first succeeded: {verdict.evidence}"
        )
    j.found[(probe, "*")] = verdict
    j.stages[(candidate, probe, "*")] = failure["stage"]
    return True


def _judge_output(
    j: _Judging,
    probe: str,
    output: str,
    ref: np.ndarray,
    cand: np.ndarray,
    siblings: dict[str, tuple[Any, Any]],
    eager: dict[str, tuple[dict[str, Any], Any]],
) -> Verdict:
    """One output on one probe: classified with its evidence, held against its reruns, its full comparison when
    only a sample was stored, and the positions the case's mask leaves out."""
    rec, candidate, reference = j.rec, j.candidate, j.reference
    rtol, atol = output_tolerance(j.tolerances, output)
    masked = masks.declared_mask(rec, j.tolerances.get("output_masks"), probe, output, ref.shape)
    ignore = None
    if masked is not None:
        cand, ignore, ignored = _outside_mask(ref, cand, masked, *tolerance_for(ref, rtol, atol))
    evidence = _classify_evidence(j, probe, output, siblings, eager, ignore)
    verdict = classify(ref, cand, rtol, atol, **evidence)
    reruns = rec.reruns(candidate, probe, output)
    if reruns:
        if masked is not None:
            reruns = [_outside_mask(ref, again, masked, *tolerance_for(ref, rtol, atol))[0] for again in reruns]
        verdict = judge_reruns(
            verdict, cand, reruns, [classify(ref, again, rtol, atol, **evidence) for again in reruns]
        )
    if rec.sampled(reference, probe, output) or rec.sampled(candidate, probe, output):
        verdict = judge_sampled(verdict, rec.row(reference, probe, output), rec.row(candidate, probe, output))
    if masked is not None:
        verdict.evidence = f"On the positions where {masked[0]} is 1: {verdict.evidence} {ignored}"
    elif not verdict.passed and verdict.label in ("mismatch", "nonfinite"):
        where = masks.where_mismatches_are(rec, probe, ref, cand, rtol, atol)
        if where:
            verdict.evidence += f" {where}"
        verdict.padding = masks.padding_only(rec, probe, ref, cand, rtol, atol)
    if not verdict.passed and verdict.metrics is not None:
        verdict.statistics = error_statistics(ref, cand, ignore)
    return verdict


def _classify_evidence(
    j: _Judging,
    probe: str,
    output: str,
    siblings: dict[str, tuple[Any, Any]],
    eager: dict[str, tuple[dict[str, Any], Any]],
    ignore: Any,
) -> dict[str, Any]:
    """What ``classify`` may explain a difference by, each from a source other than the candidate: the float64
    oracle, the reference's reruns, eager's own ranked values (or the graph's, for a run recorded before those),
    the summation bound, the order the model promised, the rows its scores group."""
    rec, legacy = j.rec, j.legacy
    ranked_row = rec.row(j.ranked_from, probe, output) if j.ranked_from else None
    graph_ranked = None
    if ranked_row is not None:
        info = json.loads(ranked_row["about"])
        graph_ranked = RankedValues(
            rec.array(j.ranked_from, probe, output), info["op"], info["axis"], info["keepdims"], source="graph"
        )
    own = eager.get(output)  # what eager's own index ops say this output is (None: not one of theirs)
    ranked = own[1] if own is not None and own[0]["kind"] == "index" else None
    scores = {o for o, (info, _) in eager.items() if info["kind"] == "values"}
    if legacy is not None:  # a run recorded before eager's evidence existed: judged as it was then, and said so
        ranked, graph_ranked = graph_ranked, None
        if ranked is not None:
            ranked.source = "graph, recorded before difftest gathered eager's own values (rerun to check)"
    accumulated_row = rec.row(j.accumulated_from, probe, output) if j.accumulated_from else None
    accumulated = None
    if accumulated_row is not None:
        accumulated = (rec.array(j.accumulated_from, probe, output), json.loads(accumulated_row["about"]))
    return dict(
        oracle=rec.array(j.context.oracle, probe, output) if j.context.oracle else None,
        reference_reruns=rec.reruns(j.reference, probe, output),
        ranked=ranked,
        graph_ranked=graph_ranked,
        accumulation=accumulated,
        # Which order the model promised is the PyTorch call's (topk(sorted=False)), never the graph's.
        unordered_axis=(
            legacy.get(output)
            if legacy is not None
            else own[0]["axis"]
            if own is not None and not own[0].get("sorted", True)
            else None
        ),
        # Rows ordered by equal scores: only eager's own score outputs group an output eager gathered or ranked.
        siblings={
            o: pair
            for o, pair in siblings.items()
            if o != output
            and pair[1] is not None
            and pair[0] is not None
            and (legacy is not None or (o in scores and own is not None and own[0]["kind"] in ("gathered", "index")))
        },
        ignore=ignore,
        cut_rows=own[0].get("cut_rows") if own is not None else None,
        legacy=legacy is not None,
    )


def legacy_tie_evidence(rec: Recorded, export: dict[str, Any]) -> dict[str, int] | None:
    """For a case recorded before difftest gathered eager's own index evidence (no ``eager-ranked`` row and no
    ``reseeded`` one: a run since then always reruns eager with another seed), the export's unordered outputs, so
    the run re-judges as it was judged when it was made; None for every run that has eager's evidence."""
    if not probe_rules.predates_eager_evidence(rec):
        return None
    return dict(export.get("unordered_outputs") or {})


def eager_index_outputs(
    rec: Recorded, probe: str, outputs: list[str]
) -> dict[str, tuple[dict[str, Any], RankedValues | None]]:
    """Output -> (what eager's own index ops made of it: kind index / values / gathered, op, axis, sorted; the
    values eager ranked, for an index output), from the ``eager-ranked`` rows of this probe (see
    ``worker.eager_ranked``). Empty where eager's evidence was not gathered (no candidate differed)."""
    from ..record.names import EAGER_RANKED

    found: dict[str, tuple[dict[str, Any], RankedValues | None]] = {}
    for output in outputs:
        row = rec.row(EAGER_RANKED, probe, output)
        if row is None:
            continue
        info = json.loads(row["about"] or "{}")
        ranked = None
        if info.get("kind") == "index":
            ranked = RankedValues(
                rec.array(EAGER_RANKED, probe, output), info["op"], info["axis"], info["keepdims"], source="eager"
            )
        elif info.get("kind") == "gathered" and "cut_score" in info:
            info = {**info, "cut_rows": rec.array(EAGER_RANKED, probe, output)}
        found[output] = (info, ranked)
    return found


def judge_reruns(first: Verdict, candidate: np.ndarray, reruns: list[np.ndarray], verdicts: list[Verdict]) -> Verdict:
    """Every run of a candidate is judged on its own: a failure on any rerun fails the candidate, saying which run
    (a first run that passes buys nothing). Runs that all pass but differ from each other are ``nondeterministic``:
    each is accurate on its own evidence, and they vary."""
    total = 1 + len(reruns)
    if first.passed:
        for number, verdict in enumerate(verdicts, start=2):
            if not verdict.passed:
                verdict.evidence = (
                    f"run {number} of {total} on this probe: {verdict.evidence} (run 1 was "
                    f"{first.label}: a candidate is judged on every run)"
                )
                return verdict
    if not first.passed:
        return first
    varying = [again for again in reruns if again.shape != candidate.shape or not bit_identical(candidate, again)]
    if not varying or first.label in ("nondeterministic",):
        return first
    with np.errstate(all="ignore"):
        spread = max(
            float(np.nan_to_num(np.abs(as_float64(candidate) - as_float64(again)), nan=0.0).max())
            if again.shape == candidate.shape
            else float("inf")
            for again in varying
        )
    labels = ", ".join(sorted({first.label, *(v.label for v in verdicts)}))
    return Verdict(
        "nondeterministic",
        (
            f"the candidate's {total} runs differ from each other by up to {spread:.7g}, but every one passes on its "
            "own "
            f"evidence ({labels}); run 1: {first.evidence}"
        ),
        first.metrics,
        rule=first.rule,
    )


SAMPLE_REPRESENTATIVE = 2.0  # a sampled pass stands only if the full max |Δ| is within this factor of the sample's


def judge_sampled(verdict: Verdict, ref_row: dict[str, Any], cand_row: dict[str, Any]) -> Verdict:
    """A verdict reached on the stored sample of an output too large to keep whole, checked against the full
    comparison the worker made (see ``full_compare``): exact only when the full digests agree, and a pass only
    when the full comparison agrees with it. The evidence always says the stored data is a sample."""
    from .classify import Metrics

    count = int(np.prod(cand_row["shape"])) if cand_row.get("shape") is not None else None
    stored = len(cand_row["data"]) // max(1, _itemsize(cand_row["dtype"])) if cand_row.get("data") else 0
    full = _full_info(cand_row)
    sample = f"judged on an even sample of {stored} of {count} elements (the tensor exceeded the stored size)"
    if (
        ref_row.get("digest")
        and ref_row.get("digest") == cand_row.get("digest")
        and ref_row.get("dtype") == cand_row.get("dtype")
        and ref_row.get("shape") == cand_row.get("shape")
    ):
        return Verdict(
            "exact",
            f"all {count} elements bit-identical: the digests of the full tensors agree "
            f"({cand_row['digest']}); the stored copies are samples",
            verdict.metrics,
        )
    if full is None or full.get("against") is None:
        why = full.get("reason") if full else "no full comparison was recorded"
        if verdict.passed:
            return Verdict(
                "mismatch",
                f"the full tensors' digests differ and {why}, so a pass cannot be "
                f"claimed; on the sample: {verdict.label}: {verdict.evidence} ({sample})",
                verdict.metrics,
            )
        verdict.evidence += f" ({sample}; {why})"
        return verdict
    if full.get("mismatched") is None:  # the full tensors' shapes differ: the worker's comparison stopped there
        return Verdict(
            "shape",
            f"the full outputs' shapes differ: reference {full.get('shape')}, candidate {cand_row.get('shape')} "
            f"({sample})",
            verdict.metrics,
        )
    numbers = (
        f"the full comparison in the worker: {full['mismatched']} of {full['count']} elements beyond "
        f"rtol={full['rtol']:g}, atol={full['atol']:g}, max |Δ| {full['max_abs']:.7g}"
    )
    metrics = Metrics(
        count=full["count"],
        max_abs=full["max_abs"],
        mean_abs=full["mean_abs"],
        mismatched=full["mismatched"],
        rtol=full["rtol"],
        atol=full["atol"],
        worst_index=tuple(full.get("worst_index") or ()) or None,
    )
    if verdict.label == "exact" or (verdict.passed and full["mismatched"] == 0):
        label = "numeric" if full["mismatched"] == 0 else "mismatch"
        return Verdict(label, f"the full tensors' digests differ; {numbers} ({sample})", metrics)
    if verdict.passed:
        seen = (verdict.metrics.max_abs or 0.0) if verdict.metrics else 0.0
        if full["max_abs"] > SAMPLE_REPRESENTATIVE * seen + full["atol"]:
            return Verdict(
                "mismatch",
                f"the sample passed ({verdict.label}: max |Δ| {seen:.7g} on it) but {numbers}: "
                f"the sample does not represent the whole ({sample})",
                metrics,
            )
        verdict.evidence += f" ({sample}; {numbers}, as large as on the sample)"
        return verdict
    verdict.evidence += f" ({sample}; {numbers})"
    if verdict.metrics is None or not verdict.metrics.count:
        verdict.metrics = metrics
    return verdict


def _full_info(row: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return row.get("full")
    except ValueError:
        return None


def _itemsize(dtype: str) -> int:
    from ..record.tables import dtype_of

    return dtype_of(dtype).itemsize


def _outside_mask(
    reference: np.ndarray, candidate: np.ndarray, masked: tuple[str, np.ndarray], rtol: float, atol: float
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The candidate with the reference's values where the mask is 0, those positions (left out of the
    verdict's counts), and a sentence with what differs there."""
    name, keep = masked
    if candidate.shape != reference.shape or candidate.dtype != reference.dtype:
        return candidate, None, f"(the output mask {name!r} was not applied: the candidate's shape or dtype differs)"
    outside = ~keep
    with np.errstate(all="ignore"):
        diff = np.abs(as_float64(reference) - as_float64(candidate))
    beyond = outside & ~within(reference, candidate, rtol, atol)
    largest = float(np.nanmax(np.where(outside, diff, 0.0))) if outside.any() else 0.0
    return (
        np.where(keep, candidate, reference),
        outside,
        (
            f"Positions where {name} is 0 ({int(outside.sum())} of {reference.size} elements) are declared ignorable "
            "by "
            f"the case and not judged: {int(beyond.sum())} of them beyond the tolerance, largest |Δ| there "
            f"{largest:.7g}."
        ),
    )


def invalid_probe_evidence(probe: str, reference: str, failure: dict[str, Any]) -> str:
    """Why a generated probe is not judged: the reference itself refused it."""
    message = failure["message"] or "(no message)"
    if probe == "shape":
        return (
            f"not judged: the reference ({reference}) itself rejects the other sizes on the case's declared "
            f"dynamic axes, so those axes are not dynamic in the model; nothing was frozen by the export. "
            f"Eager says: {message}"
        )
    return (
        f"not judged: the generated {probe!r} probe breaks a precondition of the model (the reference "
        f"{reference} itself fails on it), so no candidate is held to it. Eager says: {message}"
    )


def case_controls(case: dict[str, Any]) -> list[str]:
    """The control backends the worker ran for this case (see ``controls``)."""
    return [
        name for name, info in (case.get("controls") or {}).items() if info.get("kind") == "backend" and info.get("ran")
    ]


def accumulation_source(case: dict, candidate: str) -> str | None:
    """The pseudo-backend whose rows hold Σ|x| behind ``candidate``'s accumulated outputs."""
    from ..backends.candidates import case_export_name
    from .accumulation import PSEUDO

    name = case_export_name(case, candidate)
    return f"{PSEUDO}:{name}" if name else None


def comparison_row(
    base: dict[str, Any], candidate: str, verdict: Verdict, probe: str, output: str, stage: str | None
) -> dict[str, Any]:
    m = verdict.metrics
    return {
        **base,
        "probe": probe,
        "output": output,
        "candidate": candidate,
        "label": verdict.label,
        "passed": verdict.passed,
        "max_abs": m.max_abs if m else None,
        "mean_abs": m.mean_abs if m else None,
        "max_rel": m.max_rel if m else None,
        "mismatched": m.mismatched if m else None,
        "count": m.count if m else None,
        "ulp_max": m.ulp_max if m else None,
        "ulp_p50": m.ulp_p50 if m else None,
        "ulp_p99": m.ulp_p99 if m else None,
        "rtol": m.rtol if m else None,
        "atol": m.atol if m else None,
        "worst_index": list(m.worst_index) if m and m.worst_index is not None else None,
        "evidence": verdict.evidence,
        "blame": verdict.blame,
        # which rule blamed them (a failure blamed by its stage carries its label) and why, as data
        "blame_rule": verdict.blame_rule or (verdict.label if verdict.blame else None),
        "blame_reason": verdict.blame_reason,
        "stage": stage,
        "accepted_by": verdict.rule,
        "tolerance_ratio": m.tolerance_ratio if m else None,
        **{name: (verdict.statistics or {}).get(name) if not verdict.passed else None for name in STATISTICS},
        "next_step": verdict.next_step,
    }


def _case_failure(case: dict[str, Any], reference: str) -> Verdict:
    """A case that failed before any candidate could be compared: its status, else the stage it failed at, says
    the verdict (``vocabulary.STAGE_TABLE``)."""
    status, stage, message = case["status"], case["stage"], case["message"] or ""
    if status in vocabulary.CASE_FAILURE_LABELS:
        return Verdict(vocabulary.CASE_FAILURE_LABELS[status], message, blame=None)
    if status == "skipped":
        return Verdict("skipped", f"the case was skipped: {message}")
    label, blame, evidence = vocabulary.case_failure(stage)
    words = {"message": message, "reference": reference, "stage": stage or "an unknown stage"}
    return Verdict(label, evidence.format(**words), blame=blame.format(**words))


def _stage_verdict(row: dict[str, Any], candidate: str) -> Verdict:
    """A candidate that failed at a stage (``vocabulary.STAGE_TABLE``): an export's failure is the one line that
    matters (the exporter's boilerplate left out; the whole message is on the case page)."""
    if row["status"] == "skipped":
        return Verdict("skipped", row["message"] or "")
    stage = row["stage"] or "run"
    label, blame, evidence = vocabulary.run_failure(stage)
    words = {
        "message": row["message"] or "",
        "stage": stage,
        "candidate": candidate,
        "headline": headline(row["message"]),
    }
    return Verdict(label, evidence.format(**words), blame=blame.format(**words))
