"""What changed between two stored runs: new failures, fixes, changed verdicts, numbers that moved a lot,
cases added or removed. ``difftest compare BASE NEW`` and ``difftest run --baseline BASE`` use it.

A failure is *known* only when the base run had the same failure: the same label family (``judge.vocabulary``:
a discrepancy, or could not run) and the same signature (the evidence with numbers, paths and candidate
names taken out) on the same output. Anything else that fails now is new, however the base run failed: a case
that crashed last night compared nothing, so tonight's mismatch in it is news.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NOT_JUDGED = ("skipped", "invalid_probe")
Failure = tuple[str | None, str, str]  # (output or None, label family, signature)

GROWTH = 10.0  # "error grew tenfold"
KINDS = ("candidates", "new_failure", "fixed", "changed", "numbers", "added", "removed")
TITLES = {
    "candidates": "candidates added or removed",
    "new_failure": "new failures",
    "fixed": "fixed",
    "changed": "changed verdict",
    "numbers": f"error grew {GROWTH:g}× or more",
    "added": "added",
    "removed": "removed",
}


@dataclass
class Change:
    kind: str
    case: str
    candidate: str
    before: str  # "label (status)" or "—"
    after: str
    detail: str


def compare_runs(base_dir: Path, new_dir: Path, growth: float = GROWTH) -> list[Change]:
    from ..judge.expectations import run_outcomes
    from ..record.tables import read_table

    base_comparisons = read_table(base_dir, "comparisons").to_dicts()
    new_comparisons = read_table(new_dir, "comparisons").to_dicts()
    base, _ = run_outcomes(base_dir, comparisons=base_comparisons)
    new, _ = run_outcomes(new_dir, comparisons=new_comparisons)
    base_numbers = _worst_numbers(base_comparisons)
    new_numbers = _worst_numbers(new_comparisons)
    candidates = (_requested(base_dir), _requested(new_dir))
    failures = (failures_of(base, base_comparisons), failures_of(new, new_comparisons))
    return diff_outcomes(base, new, base_numbers, new_numbers, growth, candidates, failures)


def label_family(label: str) -> str:
    """The label's family in the vocabulary (discrepancy, could_not_run, ...); the label itself if unknown."""
    from ..judge import vocabulary

    try:
        return vocabulary.label(label).family
    except (KeyError, ValueError):
        return label


def signature(evidence: str | None) -> str:
    """What makes two failures the same: the evidence without the blame sentence, candidate names, paths, digests
    and numbers (which move from night to night)."""
    text = (evidence or "").split(" Blame:")[0]
    text = re.sub(r"(?:[A-Za-z]:)?(?:/[^\s'\":,()]+)+", "<path>", text)
    text = re.sub(r"\b(?:ort|torch|onnx)-[\w-]+(?:\[[^\]]*\])?", "<candidate>", text)
    text = re.sub(r"\b[0-9a-f]{8,}\b", "#", text)
    text = re.sub(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", text)
    return " ".join(text.split())[:400]


def failures_of(outcomes: list[Any], comparisons: list[dict[str, Any]]) -> dict[tuple[str, str], set[Failure]]:
    """(case, candidate) of each failing outcome -> its failures: (output, label family, signature) of every
    comparison under it that did not pass and that the case did not declare."""
    rows_of: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in comparisons:
        rows_of.setdefault((c["case"], c["candidate"]), []).append(c)
    found: dict[tuple[str, str], set[Failure]] = {}
    for o in outcomes:
        if not o.failed:
            continue
        expected = set(o.expected or [])
        items = {
            (r["output"], label_family(r["label"]), signature(r["evidence"]))
            for r in rows_of.get((o.case, o.candidate), [])
            if not r["passed"] and r["label"] not in NOT_JUDGED and r["label"] not in expected
        }
        found[(o.case, o.candidate)] = items or {(None, label_family(o.label), signature(o.evidence))}
    return found


def _requested(run_dir: Path) -> list[str]:
    from ..record.tables import read_table, row_dicts

    row = row_dicts(read_table(run_dir, "runs"), "runs")[0]
    return [b for b in row["backends_requested"] or [] if b != row["reference"]]


def diff_outcomes(
    base: list[Any],
    new: list[Any],
    base_numbers: dict,
    new_numbers: dict,
    growth: float = GROWTH,
    candidates: tuple[list[str], list[str]] | None = None,
    failures: tuple[dict, dict] | None = None,
) -> list[Change]:
    """What changed from ``base`` to ``new``. A candidate that one run has and the other lacks is a change of its
    own (a nightly that silently lost ``ort-cuda`` tested less), and so is each of its results. A failure is known
    only when the base had the same one (``failures``: each run's :func:`failures_of`; without them, the outcomes'
    own label family and evidence); any other failure is new."""
    if failures is None:
        failures = (
            {(o.case, o.candidate): {(None, label_family(o.label), signature(o.evidence))} for o in base if o.failed},
            {(o.case, o.candidate): {(None, label_family(o.label), signature(o.evidence))} for o in new if o.failed},
        )
    before = {(o.case, o.candidate): o for o in base}
    after = {(o.case, o.candidate): o for o in new}
    old_set = candidates[0] if candidates else sorted({o.candidate for o in base})
    new_set = candidates[1] if candidates else sorted({o.candidate for o in new})
    changes: list[Change] = []
    for name in [c for c in old_set if c not in new_set]:
        count = sum(1 for o in base if o.candidate == name)
        changes.append(
            Change(
                "candidates",
                "*",
                name,
                "in the base run",
                "missing",
                f"the candidate is no longer run: {count} result(s) not produced",
            )
        )
    for name in [c for c in new_set if c not in old_set]:
        count = sum(1 for o in new if o.candidate == name)
        changes.append(
            Change("candidates", "*", name, "missing", "in the new run", f"a new candidate: {count} result(s)")
        )
    for key, o in after.items():
        old = before.get(key)
        if old is None:
            changes.append(Change("added", o.case, o.candidate, "—", _state(o), o.evidence[:300]))
            if o.failed:
                changes.append(Change("new_failure", o.case, o.candidate, "—", _state(o), o.evidence[:300]))
            continue
        if o.failed and not old.failed:
            changes.append(Change("new_failure", o.case, o.candidate, _state(old), _state(o), o.evidence[:300]))
        elif o.failed and not failures[1].get(key, set()) <= failures[0].get(key, set()):
            # It failed before too, but not like this: a crash compared nothing, another output or label is news.
            changes.append(
                Change(
                    "new_failure",
                    o.case,
                    o.candidate,
                    _state(old),
                    _state(o),
                    f"not the base run's failure ({_state(old)}): {o.evidence[:280]}",
                )
            )
        elif o.failed and old.label != o.label:  # the same failure said another way (a crash, now a timeout)
            changes.append(Change("changed", o.case, o.candidate, _state(old), _state(o), o.evidence[:300]))
        elif old.failed and not o.failed:
            changes.append(Change("fixed", o.case, o.candidate, _state(old), _state(o), o.evidence[:300]))
        elif old.label != o.label:
            changes.append(Change("changed", o.case, o.candidate, _state(old), _state(o), o.evidence[:300]))
        else:
            grown = _growth(base_numbers.get(key), new_numbers.get(key), growth)
            if grown:
                changes.append(Change("numbers", o.case, o.candidate, _state(old), _state(o), grown))
    for key, o in before.items():
        if key not in after:
            changes.append(Change("removed", o.case, o.candidate, _state(o), "—", ""))
    order = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(changes, key=lambda c: (order[c.kind], c.case, c.candidate))


def new_failures(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.kind == "new_failure"]


def _state(o: Any) -> str:
    return f"{o.label} ({o.status})"


def _worst_numbers(comparisons: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, str]]:
    """(case, candidate) -> (largest max_abs over its comparisons, where)."""
    worst: dict[tuple[str, str], tuple[float, str]] = {}
    for c in comparisons:
        value = c.get("max_abs")
        if value is None:
            continue
        key = (c["case"], c["candidate"])
        if key not in worst or value > worst[key][0]:
            worst[key] = (value, f"{c['probe']}/{c['output']}")
    return worst


def _growth(old: tuple[float, str] | None, new: tuple[float, str] | None, factor: float) -> str | None:
    if old is None or new is None:
        return None
    floor = 1e-12
    if new[0] >= factor * max(old[0], floor) and new[0] > 1e-9:
        return f"max |Δ| {old[0]:.3g} → {new[0]:.3g} ({new[1]}), ×{new[0] / max(old[0], floor):.3g}"
    return None


def as_table(changes: list[Change]) -> str:
    if not changes:
        return "no changes"
    counts = Counter(c.kind for c in changes)
    lines = [", ".join(f"{TITLES[k]}: {counts[k]}" for k in KINDS if counts[k])]
    width = max(len(f"{c.case} [{c.candidate}]") for c in changes)
    for c in changes:
        lines.append(
            f"{c.kind:<12} {f'{c.case} [{c.candidate}]':<{width}}  {c.before:>24} → {c.after:<24} {c.detail[:120]}"
        )
    return "\n".join(lines)


def as_markdown(changes: list[Change], base: str, new: str) -> str:
    counts = Counter(c.kind for c in changes)
    lines = [f"## difftest: {_md(new)} against {_md(base)}", ""]
    lines.append(", ".join(f"**{TITLES[k]}**: {counts[k]}" for k in KINDS if counts[k]) or "No changes.")
    for kind in KINDS:
        rows = [c for c in changes if c.kind == kind]
        if not rows:
            continue
        lines += [
            "",
            f"### {TITLES[kind].capitalize()} ({len(rows)})",
            "",
            "| case | candidate | before | after | detail |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {_md(c.case)} | {_md(c.candidate)} | {_md(c.before)} | {_md(c.after)} | {_md(c.detail[:200])} |"
            for c in rows
        ]
    return "\n".join(lines) + "\n"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~@&=:^$])")
_MD_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def _md(text: str | None) -> str:
    """Text as literal markdown (the nightly's job summary renders it): every markdown character escaped, so a case
    name or an error message cannot add links, images, HTML, mentions or table cells; control and direction
    characters written as ``\\xNN``, line breaks as spaces."""
    text = " ".join(str(text or "").replace("\r", "\n").split("\n"))
    text = _MD_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def write(changes: list[Change], base_dir: Path, new_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """compare.md and compare.html in ``out_dir``."""
    from ..report import environment

    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / "compare.md"
    _replace(markdown, as_markdown(changes, base_dir.name, new_dir.name))
    html = out_dir / "compare.html"
    _replace(
        html,
        environment()
        .get_template("compare.html")
        .render(
            base=str(base_dir),
            new=str(new_dir),
            kinds=KINDS,
            titles=TITLES,
            changes=[asdict(c) for c in changes],
            counts=Counter(c.kind for c in changes),
        ),
    )
    return markdown, html


def _replace(path: Path, text: str) -> None:
    """Write through a new file renamed over ``path``: a symbolic link there is replaced, never written through."""
    import os
    import tempfile

    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
