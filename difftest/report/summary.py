"""What a run tells CI and the terminal: exit code, JUnit XML, summary.json, a one-screen summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from ..exitcodes import ExitCode
from ..judge import vocabulary


def exit_code_for(outcomes: list[Any], waivers: Any = None, new_failures: set | None = None) -> ExitCode:
    """1 for an unexpected failure (with a baseline: a new one), or an expired waiver (renew or remove it)."""
    failed = [o for o in outcomes if o.failed]
    if new_failures is not None:
        failed = [o for o in failed if (o.case, o.candidate) in new_failures]
    if failed or (waivers is not None and waivers.expired):
        return ExitCode.FAILURES
    return ExitCode.OK


def counts(outcomes: list[Any]) -> dict[str, dict[str, int]]:
    return {
        "labels": dict(Counter(o.label for o in outcomes).most_common()),
        "status": dict(Counter(o.status for o in outcomes).most_common()),
    }


def write_summary(
    run_dir: Path,
    cases: list[dict[str, Any]],
    outcomes: list[Any],
    waivers: Any = None,
    new_failures: set | None = None,
) -> dict[str, Any]:
    data = {
        "run_dir": str(run_dir),
        "cases": len(cases),
        "comparisons": len(outcomes),
        **counts(outcomes),
        "failures": [
            {
                "case": o.case,
                "candidate": o.candidate,
                "label": o.label,
                "reason": o.reason,
                "evidence": o.evidence,
                "new": None if new_failures is None else (o.case, o.candidate) in new_failures,
            }
            for o in outcomes
            if o.failed
        ],
        "new_failures": None if new_failures is None else len(new_failures),
        "waivers": waivers.as_dict() if waivers is not None else None,
        "exit_code": int(exit_code_for(outcomes, waivers, new_failures)),
    }
    (run_dir / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    return data


_NOT_XML = __import__("re").compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: Any) -> str:
    """Text XML 1.0 can hold: characters it forbids (control characters in an exception message, say) are
    written as ``\\xNN`` instead of making the whole file unreadable."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def candidate_seconds(run_dir: Path) -> dict[tuple[str, str], float]:
    """(case, candidate) -> the time that candidate took: its session build and its runs (so testcase times add up
    to no more than the run's; the case's export is not charged to each candidate)."""
    from ..record.tables import read_table

    try:
        tensors = (
            read_table(run_dir, "tensors", without_data=True)
            .select("case", "backend", "probe", "rerun", "index", "output", "seconds", "prepare_seconds")
            .to_dicts()
        )
    except Exception:
        return {}
    return {key: runs + prepare for key, (runs, prepare) in backend_times(tensors).items()}


def backend_times(tensors: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, float]]:
    """(case, backend) -> (seconds in its runs, seconds building its session), from the tensors rows: a run's
    time is on its first output's row (or on its error row), a session's on every row of the backend."""
    runs: dict[tuple[str, str], float] = {}
    prepared: dict[tuple[str, str], float] = {}
    for t in tensors:
        key = (t["case"], t["backend"])
        if t["seconds"] is not None and (t["output"] is None or t["index"] in (0, None)):
            runs[key] = runs.get(key, 0.0) + t["seconds"]
        if t["prepare_seconds"] is not None:
            prepared[key] = t["prepare_seconds"]
    return {key: (runs.get(key, 0.0), prepared.get(key, 0.0)) for key in set(runs) | set(prepared)}


def _wall_seconds(run_dir: Path, fallback: float) -> float:
    from ..record.tables import read_table

    try:
        value = read_table(run_dir, "runs").to_dicts()[0].get("seconds")
    except Exception:
        return fallback
    return float(value) if value is not None else fallback


def write_junit(run_dir: Path, cases: list[dict[str, Any]], outcomes: list[Any]) -> None:
    """One testcase per case × candidate; expected failures are reported as skipped, as pytest does.

    Each carries properties (as pytest's ``record_property`` writes them): ``url``, its evidence in the report
    relative to the run folder; ``expectation``, the declaration that applied; ``blame`` for a failure."""
    from .triage import evidence_link

    own = candidate_seconds(run_dir)
    seconds = {c["case"]: c.get("seconds") or 0.0 for c in cases}
    counts_as = {o.status: vocabulary.STATUSES[o.status].counts_as for o in outcomes}
    applicable = [o for o in outcomes if counts_as[o.status] != "omitted"]
    suite = ET.Element(
        "testsuite",
        name="difftest",
        tests=str(len(applicable)),
        failures=str(sum(counts_as[o.status] == "fail" for o in outcomes)),
        errors="0",
        skipped=str(sum(counts_as[o.status] == "skip" for o in outcomes)),
        time=f"{_wall_seconds(run_dir, sum(seconds.values())):.3f}",
    )
    for o in outcomes:
        if counts_as[o.status] == "omitted":
            continue  # no test: the candidate cannot run this kind of case at all (an ONNX file on eager torch)
        element = ET.SubElement(
            suite,
            "testcase",
            classname=xml_text(o.case.split("::")[0]),
            name=xml_text(f"{o.case.split('::', 1)[-1]}[{o.candidate}]"),
            time=f"{own.get((o.case, o.candidate), 0.0):.3f}",
        )
        properties = ET.SubElement(element, "properties")
        ET.SubElement(properties, "property", name="url", value=xml_text(evidence_link(o.case, o.candidate)))
        if o.scope:
            ET.SubElement(properties, "property", name="expectation", value=xml_text(o.scope))
        if o.blame and o.status == "fail":
            ET.SubElement(properties, "property", name="blame", value=xml_text(o.blame))
            for name in ("blame_rule", "blame_reason", "next_step"):
                if getattr(o, name, None):
                    ET.SubElement(properties, "property", name=name, value=xml_text(getattr(o, name)))
        if o.status == "fail":
            failure = ET.SubElement(element, "failure", message=xml_text(f"{o.label}: {o.reason}"), type=o.label)
            failure.text = xml_text(o.evidence)
        elif o.status == "skipped":
            ET.SubElement(element, "skipped", message=xml_text(o.reason or "backend not available"))
        elif o.status in ("xfail", "waived"):
            kind = "expected failure" if o.status == "xfail" else o.reason
            ET.SubElement(element, "skipped", message=xml_text(f"{kind}: {o.label}: {o.evidence}"[:1000]))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(run_dir / "junit.xml", encoding="utf-8", xml_declaration=True)


def _worth_a_look(outcomes: list[Any], most: int = 4) -> list[str]:
    """One line per candidate × warning label (a pass worth a look: reduced_precision, nondeterministic, dtype), so
    a pass that is only a pass at a runtime's reduced precision is said, not folded into "no unexpected failures"."""
    found = Counter(
        (o.candidate, o.label) for o in outcomes if o.status == "pass" and vocabulary.label(o.label).outcome == "warns"
    )
    lines = [
        f"worth a look: {candidate}: {label} on {n} case(s): {vocabulary.label(label).meaning}"
        for (candidate, label), n in found.most_common(most)
    ]
    if len(found) > most:
        lines.append(f"… and {len(found) - most} more candidate × warning pair(s) (see the report)")
    return lines


SUMMARY_STATUSES = ("pass", "xfail", "waived", "fail", "skipped", "not_applicable")  # the order the summary says them


def format_summary(
    run_dir: Path,
    cases: list[dict[str, Any]],
    outcomes: list[Any],
    skipped: dict[str, str],
    seconds: float | None = None,
    waivers: Any = None,
) -> str:
    """The one screen a terminal user reads at the end of a run."""
    lines = []
    c = counts(outcomes)
    took = f" in {seconds:.1f}s" if seconds is not None else ""
    lines.append(f"{len(cases)} case(s), {len(outcomes)} case×candidate result(s){took}")
    status = c["status"]
    lines.append(
        "status:   "
        + ", ".join(
            f"{name} {status.get(name, 0)}" for name in SUMMARY_STATUSES if name in status or name in ("pass", "fail")
        )
    )
    for name, reason in skipped.items():  # each backend once, with its reason, not once per result
        count = sum(o.status == "skipped" and o.candidate == name for o in outcomes)
        lines.append(f"skipped:  {name}: {reason}" + (f" ({count} result(s))" if count else ""))
    judged = {label: n for label, n in c["labels"].items() if label != "skipped"}
    if judged:
        lines.append("verdicts: " + ", ".join(f"{label} {n}" for label, n in judged.items()))
    lines += _worth_a_look(outcomes)
    warned = [(c["case"], w) for c in cases for w in (c.get("warnings") or [])]
    for case_id, warning in warned[:5]:
        lines.append(f"warning: {case_id}: {warning}")
    if len(warned) > 5:
        lines.append(f"… and {len(warned) - 5} more warning(s) (see the case pages)")
    if waivers is not None:
        for w in waivers.expired:
            lines.append(f"EXPIRED waiver (fails the run until renewed or removed): {w.describe()}: {w.reason}")
        for w in waivers.stale:
            lines.append(f"stale waiver (matches no failure; remove it?): {w.describe()}")
    failures = [o for o in outcomes if o.failed]
    if failures:
        from .triage import common_patterns, group_failures, headline

        groups = group_failures(outcomes, None)
        lines.append(f"in short: {headline(groups, common_patterns(groups))}")
        lines.append(f"{len(failures)} unexpected failure(s):")
        for o in failures[:20]:
            first = (o.evidence or "").strip().splitlines()[0] if (o.evidence or "").strip() else ""
            hint = f": {first[:160]}{'…' if len(first) > 160 else ''}" if first else ""
            if getattr(o, "blame_rule", None) == "training_mode":  # nothing else is worth reading before .eval()
                hint = ": call model.eval() first: the model was checked in training mode (blame: model)"
            lines.append(f"  FAIL {o.case} [{o.candidate}] {o.label}: {o.reason}{hint}")
            if getattr(o, "next_step", None):
                lines.append(f"       next step: {o.next_step}")
        if len(failures) > 20:
            lines.append(f"  … and {len(failures) - 20} more (see the report)")
    else:
        lines.append("no unexpected failures")
    latest = run_dir.parent / "latest"
    if latest.is_symlink() and latest.resolve() == run_dir.resolve():
        lines.append(f"report: {latest / 'index.html'}  (-> {(run_dir / 'index.html').resolve()})")
    else:
        lines.append(f"report: {(run_dir / 'index.html').resolve()}")
    return "\n".join(lines)
