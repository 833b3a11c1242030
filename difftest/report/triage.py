"""The morning read: what broke, what could not run, which expectations to update, in one sentence and three
sections, each row a root cause rather than a result.

Outcomes that fail are grouped by case × candidate family (``ort-cuda`` and its variants ``ort-cuda[tf32=0]``,
``ort-cuda[opt=disable]``) × signature (the label and the evidence with candidate names and numbers taken out),
so a variant that repeats its twin is folded into one row ("same in ort-cuda[tf32=0]"). Sections:

- discrepancies: wrong values (mismatch, layout, nonfinite, shape, frozen_input, shape_specialized);
- could not run: export and runtime errors, crashes and timeouts, split into *setup* (the case, the model or
  difftest itself: fix the suite or the machine) and *limitation* (an exporter refuses: an exporter limitation; a
  runtime refuses: a backend limitation);
- expectations that no longer hold: a declared failure that now passes (or fails differently), with the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..judge import vocabulary

DISCREPANCY = set(vocabulary.DISCREPANCY)  # the label families, from the one table
COULD_NOT_RUN = set(vocabulary.COULD_NOT_RUN)


@dataclass
class Group:
    section: str  # "discrepancy" | "could_not_run" | "expectation"
    kind: str  # could_not_run: "setup" | "limitation" | "crash"; discrepancy/expectation: ""
    case: str
    family: str
    label: str
    summary: str  # one line: the evidence's own summary (an export error's, not the exporter's boilerplate)
    outcomes: list[Any] = field(default_factory=list)  # the first is shown; the rest are folded
    fix: str | None = None
    new: bool | None = None  # against the baseline; None without one

    @property
    def first(self) -> Any:
        return self.outcomes[0]

    @property
    def folded(self) -> list[str]:
        return [o.candidate for o in self.outcomes[1:]]


def candidate_anchor(candidate: str) -> str:
    """The id of a candidate's row on a case page: ``c-ort-cuda-tf32-0``."""
    return "c-" + re.sub(r"[^0-9A-Za-z]+", "-", candidate).strip("-").lower()


def case_page(case_id: str) -> str:
    """A case's page, relative to the run folder."""
    from ..record.names import slug

    return f"cases/{slug(case_id)}.html"


def evidence_link(case_id: str, candidate: str) -> str:
    """Where a result's evidence is, relative to the run folder: its case page at its candidate's row."""
    return f"{case_page(case_id)}#{candidate_anchor(candidate)}"


def family(candidate: str) -> str:
    return candidate.split("[", 1)[0]


def error_summary(text: str | None) -> str:
    """The line that says what went wrong: for an exporter's long message, its "Exception summary"; else the
    first line; prefixes like "export failed: " and the exporter's step boilerplate removed."""
    text = (text or "").strip()
    if "## Exception summary" in text:
        after = text.split("## Exception summary", 1)[1]
        lines = [line.strip() for line in after.splitlines() if line.strip()]
        if lines:
            return _clip(re.sub(r"^<class '([\w.]+)'>:\s*", lambda m: m.group(1).rsplit(".", 1)[-1] + ": ", lines[0]))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if first.endswith(":") and len(lines) > 1:  # "Found the following conflicts ...:" says nothing without its list
        first = f"{first} {lines[1]}"
    first = re.sub(r"^(export failed|run failed|session failed|[\w:]+ failed): ", "", first)
    first = re.sub(
        r"Failed to export the model with torch\.export\. This is step \d/\d of exporting the model to "
        r"ONNX\. Next steps:?",
        "torch.export failed",
        first,
    )
    return _clip(first)


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _candidate_names() -> "re.Pattern[str]":
    """Any registered backend's name, with its settings (``openvino[precision=f32]``, ``ort-cuda[tf32=0]``), and the
    pseudo-backends named like them (``onnx-ref-fp64``): every runtime family is taken out alike (the reference,
    ``torch``, stays: it is the same in every evidence)."""
    from ..backends import REGISTRY

    names = "|".join(re.escape(n) for n in sorted(REGISTRY, key=len, reverse=True) if n != "torch")  # the reference
    return re.compile(rf"(?<![\w-])(?:{names}|(?:ort|torch|onnx)-[\w-]+)(?:\[[^\]]*\])?(?![\w-])")


def _signature(outcome: Any) -> str:
    """What makes two results the same root cause: the label and the evidence without candidate names and
    numbers (the blame is a column of its own, not part of the evidence)."""
    text = outcome.evidence or ""
    text = _candidate_names().sub("<candidate>", text)
    text = re.sub(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", text)
    return f"{outcome.label}|{text[:400]}"


def group_failures(outcomes: list[Any], new_failures: set[tuple[str, str]] | None) -> list[Group]:
    """The failing outcomes as groups, in the order a reader should see them (new first, then by case)."""
    from ..judge.classify import passes

    groups: dict[tuple[str, str, str, str], Group] = {}
    for o in outcomes:
        if not o.failed:
            continue
        if passes(o.label) or (o.expected and o.label not in o.expected and o.label not in DISCREPANCY | COULD_NOT_RUN):
            section, kind = "expectation", ""
        elif o.label in DISCREPANCY:
            section, kind = "discrepancy", ""
        else:
            section = "could_not_run"
            blame = getattr(o, "blame", None)
            kind = "crash" if o.label in ("crash", "timeout") else "setup" if _is_setup(o, blame) else "limitation"
        # One export feeds every ONNX candidate: its failure is one root cause however many runtimes were waiting.
        key = (section, o.case, "export" if o.label == "export_error" else family(o.candidate), _signature(o))
        group = groups.get(key)
        if group is None:
            summary = error_summary(o.evidence) if section == "could_not_run" else _clip(o.evidence or "", 400)
            group = groups[key] = Group(section, kind, o.case, family(o.candidate), o.label, summary)
        group.outcomes.append(o)
        if new_failures is not None:
            is_new = (o.case, o.candidate) in new_failures
            group.new = is_new if group.new is None else (group.new or is_new)
    for group in groups.values():
        families = sorted({family(o.candidate) for o in group.outcomes})
        group.family = ", ".join(families)
        group.outcomes.sort(key=lambda o: (o.candidate not in families, o.candidate))
        if group.section == "expectation":
            group.fix = _fix(group)
    order = {"discrepancy": 0, "could_not_run": 1, "expectation": 2}
    return sorted(groups.values(), key=lambda g: (order[g.section], g.new is False, g.kind, g.case, g.family))


def _is_setup(outcome: Any, blame: str | None) -> bool:
    """The case, the model or difftest: by blame, or (for runs judged before torch-cuda placed whole models) an
    error about tensors left on two devices, which no backend can be asked to fix."""
    from ..backends.torch_eager import mixed_devices

    return vocabulary.blame_kind(blame) == "setup" or mixed_devices(outcome.evidence or "") is not None


def _fix(group: Group) -> str:
    o = group.first
    expected = " or ".join(o.expected or [])
    names = ", ".join(x.candidate for x in group.outcomes)
    declared = (o.scope or "").split(";")[0] or "declared for the case"
    if o.label in DISCREPANCY | COULD_NOT_RUN:
        return (
            f"{names} now gives {o.label} where the case expects {expected} ({declared}): if that is the new "
            f"truth, declare {o.label} for {group.family}; if not, it is a regression"
        )
    return (
        f"{names} now passes ({o.label}) where the case expects {expected} ({declared}): remove that "
        f"expectation for {group.family} (or narrow it to the candidates that still fail), and keep the reason "
        "in the docstring if it still holds elsewhere"
    )


@dataclass
class Pattern:
    """Discrepancies in several cases with the same verdict, candidate family and blame reasoning: often one
    root cause (a runtime's precision mode, one exporter bug) worth reading once rather than N times."""

    family: str
    label: str
    reason: str
    groups: list[Group]

    @property
    def cases(self) -> list[str]:
        return [g.case for g in self.groups]


PATTERN_MIN_CASES = 3


def common_patterns(groups: list[Group]) -> list[Pattern]:
    found: dict[tuple[str, str, str, str], Pattern] = {}
    for g in groups:
        reason = getattr(g.first, "blame_reason", None)
        if g.section != "discrepancy" or not g.first.blame or not reason:
            continue
        reason = f"{g.first.blame}: {reason}"
        key = (
            g.family,
            g.label,
            getattr(g.first, "blame_rule", None) or "",
            re.sub(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", reason),
        )
        found.setdefault(key, Pattern(g.family, g.label, reason, [])).groups.append(g)
    patterns = [p for p in found.values() if len({g.case for g in p.groups}) >= PATTERN_MIN_CASES]
    return sorted(patterns, key=lambda p: -len(p.groups))


def headline(groups: list[Group], patterns: list[Pattern]) -> str:
    """The one sentence that opens the report (``patterns``: ``common_patterns(groups)``)."""
    discrepancies = [g for g in groups if g.section == "discrepancy"]
    parts = []
    if discrepancies:
        cases = len({g.case for g in discrepancies})
        text = (
            f"{len(discrepancies)} discrepanc{'y' if len(discrepancies) == 1 else 'ies'} in {cases} "
            f"case{'s' if cases != 1 else ''}"
        )
        shared = [f"{len(p.groups)} share one pattern on {p.family}" for p in patterns]
        parts.append(text + (f" ({', '.join(shared)})" if shared else ""))
    could_not = [g for g in groups if g.section == "could_not_run"]
    by_family: dict[tuple[str, str], set[str]] = {}
    for g in could_not:
        # An export that fails is the exporter's limitation, whichever runtimes were waiting for the graph.
        kind = "exporter" if g.kind == "limitation" and g.label == "export_error" else g.kind
        by_family.setdefault((g.family, kind), set()).add(g.case)
    kinds = {
        "setup": "setup",
        "limitation": "backend limitation",
        "exporter": "exporter limitation",
        "crash": "crashed or timed out",
    }
    for (name, kind), cases in sorted(by_family.items(), key=lambda item: (-len(item[1]), item[0])):
        parts.append(f"{len(cases)} case{'s' if len(cases) != 1 else ''} could not run on {name} ({kinds[kind]})")
    expectations = sum(len(g.outcomes) for g in groups if g.section == "expectation")
    if expectations:
        parts.append(f"{expectations} expectation{'s' if expectations != 1 else ''} to update")
    if not parts:
        return "Nothing failed that the cases did not expect."
    return "; ".join(parts) + "."


def class_flips(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Integer outputs that changed in some elements under a passing verdict (a segmentation map's pixel changing
    class once a rule accepted the float difference behind it): worth a warning even though nothing fails."""
    found = []
    for c in comparisons:
        if (
            c["passed"]
            and c.get("mismatched")
            and c["label"] == "numeric"
            and c.get("rtol") == 0
            and c.get("atol") == 0
        ):
            found.append(c)
    return found
