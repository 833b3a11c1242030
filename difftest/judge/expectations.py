"""What the verdicts mean for a run: each case × candidate's worst verdict held against what the case declared
(``expect``), as an outcome: pass, fail, expected failure, waived, skipped or not applicable.

An expectation describes what the exported graph does: a label for the whole case applies to the candidates that
run an export, a key naming a candidate or a pattern applies as written (see :func:`expectation_for`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..record.tables import read_table, row_dicts
from .classify import LABELS, passes, severity
from .verdicts import case_controls


@dataclass
class Outcome:
    """One case × candidate: the worst label found, what was expected, and whether that is a failure."""

    case: str
    candidate: str
    label: str
    expected: list[str] | None
    status: str  # one of ``vocabulary.STATUSES``: pass, fail, xfail (declared), waived (by a waiver), skipped, n/a
    reason: str
    evidence: str
    probe: str | None
    scope: str = ""  # which declaration the expectation came from, and why it applies (or not) to this candidate
    blame: str | None = None
    accepted_by: list[str] = field(default_factory=list)  # rules that accepted numeric differences beyond tolerance
    blame_rule: str | None = None  # which rule of ``vocabulary.BLAME_RULES`` blamed ``blame``
    blame_reason: str | None = None  # the sentence saying why
    next_step: str | None = None  # what to do about it, when difftest knows (``next_step``)

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def outcomes(cases: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> list[Outcome]:
    """Aggregate comparisons per case × candidate and hold them against the case's expectations."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    controls = {c["case"]: set(case_controls(c)) for c in cases}
    for c in comparisons:
        if c["candidate"] in controls.get(c["case"], ()):
            continue  # a control is evidence for blame, not a result
        grouped.setdefault((c["case"], c["candidate"]), []).append(c)
    expects = {c["case"]: c.get("expect") for c in cases}
    exporters = {c["case"]: c.get("exporter") for c in cases}
    result = []
    for (case_id, candidate), rows in grouped.items():
        worst = max(rows, key=lambda r: severity(r["label"]))
        expected, scope = expectation_for(expects.get(case_id), candidate, exporters.get(case_id))
        label = worst["label"]
        if label == "skipped" and _not_applicable(worst["evidence"]):
            status, reason = "not_applicable", worst["evidence"]
        elif label == "skipped":
            status, reason = "skipped", worst["evidence"] or "backend not available here"
        elif expected is None:
            status = "pass" if passes(label) else "fail"
            reason = "" if passes(label) else f"unexpected {label}"
        elif label in expected:
            status = "pass" if passes(label) else "xfail"
            reason = f"expected {label}"
        else:
            status = "fail"
            reason = f"expected {' or '.join(expected)}, got {label}"
        rules = sorted({r["accepted_by"] for r in rows if r.get("accepted_by") and r["label"] == "numeric"})
        result.append(
            Outcome(
                case_id,
                candidate,
                label,
                expected,
                status,
                reason,
                worst["evidence"],
                worst["probe"],
                scope,
                worst.get("blame"),
                rules,
                worst.get("blame_rule"),
                worst.get("blame_reason"),
                _next_step(worst, rows),
            )
        )
    return result


def _next_step(worst: dict[str, Any], rows: list[dict[str, Any]]) -> str | None:
    """The worst comparison's next step, else the first failing comparison's that has one."""
    if worst.get("next_step"):
        return worst["next_step"]
    return next((r["next_step"] for r in rows if r.get("next_step") and not r["passed"]), None)


NOT_APPLICABLE = "not applicable:"
# How runs recorded before the "not applicable:" prefix said it (their reports are re-judged from the tables).
_LEGACY_NOT_APPLICABLE = ("this case is an ONNX test folder: there is no PyTorch model to run",)


def _not_applicable(evidence: str | None) -> bool:
    return (evidence or "").startswith((NOT_APPLICABLE, *_LEGACY_NOT_APPLICABLE))


def run_outcomes(
    run_dir: Path, cases: list[dict[str, Any]] | None = None, comparisons: list[dict[str, Any]] | None = None
):
    """Outcomes of a stored run with the waivers it was run with applied: (outcomes, WaiverReport)."""
    from . import waivers

    cases = row_dicts(read_table(run_dir, "cases"), "cases") if cases is None else cases
    comparisons = read_table(run_dir, "comparisons").to_dicts() if comparisons is None else comparisons
    results = outcomes(cases, comparisons)
    return results, waivers.apply(results, waivers.stored(run_dir), comparisons=comparisons)


def expectation_for(expect: Any, candidate: str, exporter: str | None = None) -> tuple[list[str] | None, str]:
    """(labels, scope): what a case's ``expect`` says about ``candidate``, and why.

    A label given for the whole case (``expect="tie_break"``, or the ``"*"`` key) describes what the exported graph
    does: it applies to the candidates that run an export, not to eager candidates (``torch-cuda``), which are
    expected to agree. A key naming the candidate (``"torch-cuda"``), or a pattern that matches it (``"ort-*"``),
    applies as written; the most specific key wins. ``exporter`` is the one the case's plain candidates ran (the
    case's, or the run's ``--exporter``): a key that names it (``"ort-cpu[exporter=torchscript]"``) applies to
    plain ``ort-cpu`` in a run where ``ort-cpu`` ran that exporter."""
    import fnmatch

    if expect is None:
        return None, ""
    if isinstance(expect, dict):
        names = _names_of(candidate, exporter)
        for name in names:
            if name in expect:
                return _labels(expect[name]), f"declared for {name}" + (
                    f" (the exporter {candidate} ran)" if name != candidate else ""
                )
        # Brackets in a key are a candidate's settings (``ort-*[tf32=0]``), not a glob character class.
        patterns = sorted(
            (
                k
                for k in expect
                if k != "*"
                and any(ch in k for ch in "*?")
                and any(fnmatch.fnmatchcase(name, _literal_brackets(k)) for name in names)
            ),
            key=lambda k: (-len(k.replace("*", "")), k),
        )
        if patterns:
            return _labels(expect[patterns[0]]), f"declared for {patterns[0]}"
        if "*" not in expect:
            return None, ""
        value, declared = expect["*"], "declared for every candidate ('*')"
    else:
        value, declared = expect, "declared for the case"
    if not _runs_export(candidate):
        return None, (
            f"not applied: the case's expectation ({_text(value)}, {declared}) describes its exported graph, "
            f"and {candidate} runs no export, so it is expected to agree with the reference"
        )
    return _labels(value), f"{declared}; applies to {candidate}, which runs the exported graph"


def _literal_brackets(pattern: str) -> str:
    import re

    return re.sub(r"[\[\]]", lambda m: f"[{m.group()}]", pattern)


def _names_of(candidate: str, exporter: str | None) -> list[str]:
    """The candidate's name, and for one that runs an export without naming its exporter, the name with the
    exporter it ran (``ort-cpu`` in a torchscript run is also ``ort-cpu[exporter=torchscript]``)."""
    from ..backends.candidates import parse, with_settings

    if not exporter or exporter == "recorded" or not _runs_export(candidate):
        return [candidate]
    try:
        parsed = parse(candidate)
    except Exception:
        return [candidate]
    if parsed.get("exporter"):
        return [candidate]
    return [candidate, with_settings(parsed, exporter=exporter)]


def expect_text(expect: Any) -> str:
    """A case's ``expect`` as the case page shows it: ``mismatch or numeric`` for the whole case, else
    ``ort-*: runtime_error; openvino*: mismatch``."""
    if isinstance(expect, dict):
        return "; ".join(f"{key}: {_text(value)}" for key, value in expect.items())
    return _text(expect)


def _labels(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else " or ".join(value)


def _runs_export(candidate: str) -> bool:
    from ..backends import REGISTRY
    from ..backends.candidates import parse

    try:
        return REGISTRY[parse(candidate).backend].needs_onnx
    except Exception:
        return True


def validate_expect(expect: Any) -> str | None:
    """A message if an expectation names a label that does not exist."""
    values: list[Any] = []
    for value in expect.values() if isinstance(expect, dict) else [expect]:
        values.extend([value] if isinstance(value, str) else list(value))
    unknown = sorted({v for v in values if v not in LABELS})
    return f"unknown label(s) in expect: {', '.join(unknown)} (known: {', '.join(LABELS)})" if unknown else None
