"""Waivers: known discrepancies accepted for a while, with a reason, a link and an expiry date.

    # suites/expectations.toml
    [[waiver]]
    case = "ops::max_reduce_nan"          # a case id; * and ? glob
    candidate = "ort-*"                   # optional, default "*"
    label = "nonfinite"                   # the verdict being waived
    output = "values"                     # optional, default "*": the output(s) it is waived on; * and ? glob
    reason = "ORT ReduceMax does not propagate NaN"
    link = "https://github.com/microsoft/onnxruntime/issues/10514"
    expires = 2027-03-01                  # optional; after it the waiver no longer applies and fails the run

A waiver covers what it names: the label on the outputs it names, not the case × candidate as a whole. A failing
outcome becomes ``waived`` (known, not failing) only when every failing verdict under it (each output, on any
probe) is covered by a live waiver; a new failure on another output, or another label on the waived one, still
fails, and its reason says what the waivers left uncovered. An expired waiver
fails the run even when nothing matches it, so it is renewed or removed on purpose. A waiver that matches
no failing outcome is reported as stale: the discrepancy is gone, and the waiver should go too.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

DEFAULT_PATH = Path("suites") / "expectations.toml"


@dataclass
class Waiver:
    case: str
    label: str
    reason: str
    candidate: str = "*"
    link: str | None = None
    expires: str | None = None  # ISO date
    output: str = "*"  # the output(s) the label is waived on (glob)

    def expired(self, today: dt.date) -> bool:
        return self.expires is not None and dt.date.fromisoformat(self.expires) < today

    def matches(self, case: str, candidate: str, label: str, output: str | None = None) -> bool:
        """Whether the waiver covers ``label`` on ``output`` (None: an output not known, covered only by a waiver
        for every output)."""
        if output is None:
            on_output = self.output == "*"
        else:
            on_output = fnmatch.fnmatchcase(output, self.output)
        return (
            fnmatch.fnmatchcase(case, self.case)
            and fnmatch.fnmatchcase(candidate, self.candidate)
            and label == self.label
            and on_output
        )

    def describe(self) -> str:
        scope = f"{self.case} [{self.candidate}] {self.label}" + (f" on {self.output}" if self.output != "*" else "")
        return scope + (f" (expires {self.expires})" if self.expires else "")


def load(path: Path) -> list[Waiver]:
    """Read and validate a waiver file; a clear UsageError names the file and the entry at fault."""
    from .classify import LABELS

    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the expectations file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    entries = data.get("waiver", [])
    unknown_top = sorted(set(data) - {"waiver"})
    if unknown_top or not isinstance(entries, list):
        raise UsageError(f"{path}: expected only [[waiver]] tables, found {', '.join(unknown_top) or 'waiver ='}")
    waivers = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: waiver #{number}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: each waiver is a [[waiver]] table, got {type(entry).__name__}")
        for key in ("case", "candidate", "label", "reason", "link", "output"):
            if key in entry and not isinstance(entry[key], str):
                raise UsageError(
                    f"{where}: {key} must be a string (in quotes), got {type(entry[key]).__name__} {entry[key]!r}"
                )
        missing = [k for k in ("case", "label", "reason") if not entry.get(k)]
        if missing:
            raise UsageError(f"{where}: missing {', '.join(missing)} (each waiver needs case, label and reason)")
        unknown = sorted(set(entry) - {"case", "candidate", "label", "reason", "link", "expires", "output"})
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}")
        if entry["label"] not in LABELS:
            raise UsageError(f"{where}: unknown label {entry['label']!r} (known: {', '.join(LABELS)})")
        expires = entry.get("expires")
        if expires is not None:
            if isinstance(expires, dt.datetime):
                expires = expires.date()
            if isinstance(expires, str):
                try:
                    expires = dt.date.fromisoformat(expires)
                except ValueError:
                    raise UsageError(f"{where}: expires must be a date like 2027-03-01, got {expires!r}") from None
            if not isinstance(expires, dt.date):
                raise UsageError(f"{where}: expires must be a date like 2027-03-01")
            expires = expires.isoformat()
        waivers.append(
            Waiver(
                case=entry["case"],
                label=entry["label"],
                reason=entry["reason"],
                candidate=entry.get("candidate", "*"),
                link=entry.get("link"),
                expires=expires,
                output=entry.get("output", "*"),
            )
        )
    return waivers


def save(run_dir: Path, waivers: list[Waiver], source: str | None) -> None:
    """Keep the waivers a run was judged with beside its tables, so a re-render judges the same way."""
    (run_dir / "waivers.json").write_text(
        json.dumps({"source": source, "waivers": [asdict(w) for w in waivers]}, indent=2) + "\n"
    )


def stored(run_dir: Path) -> list[Waiver]:
    path = run_dir / "waivers.json"
    if not path.exists():
        return []
    return [Waiver(**w) for w in json.loads(path.read_text())["waivers"]]


@dataclass
class WaiverReport:
    used: list[tuple[Waiver, int]]
    stale: list[Waiver]
    expired: list[Waiver]

    def as_dict(self) -> dict[str, Any]:
        return {
            "used": [{**asdict(w), "matched": n} for w, n in self.used],
            "stale": [asdict(w) for w in self.stale],
            "expired": [asdict(w) for w in self.expired],
        }


def apply(
    outcomes: list[Any],
    waivers: list[Waiver],
    today: dt.date | None = None,
    comparisons: list[dict[str, Any]] | None = None,
) -> WaiverReport:
    """Mark failing outcomes whose every failing verdict is covered by a live waiver as ``waived`` (in place) and
    report on the waivers. ``comparisons``: the run's verdicts, so a waiver covers the outputs it names and no
    other; without them an outcome stands for one failure of its label on an unknown output."""
    today = today or dt.date.today()
    counts = {id(w): 0 for w in waivers}
    expired = [w for w in waivers if w.expired(today)]
    rows_of: dict[tuple[str, str], list[dict[str, Any]]] | None = None
    if comparisons is not None:
        rows_of = {}
        for c in comparisons:
            rows_of.setdefault((c["case"], c["candidate"]), []).append(c)
    for o in outcomes:
        if o.status != "fail" or not waivers:
            continue
        items = failing_items(o, None if rows_of is None else rows_of.get((o.case, o.candidate), []))
        live: list[Waiver] = []
        uncovered, lapsed = [], []
        matched: set[int] = set()
        for output, label in items:
            found = [w for w in waivers if w.matches(o.case, o.candidate, label, output)]
            matched.update(id(w) for w in found)
            alive = [w for w in found if not w.expired(today)]
            if alive:
                live.extend(w for w in alive[:1] if w not in live)
                continue
            uncovered.append(f"{label} on {output or 'an output'}")
            lapsed.extend(w for w in found if w not in lapsed)
        for key in matched:
            counts[key] += 1
        if not uncovered and live:
            o.status = "waived"
            o.reason = "waived: " + "; ".join(w.reason + (f" ({w.link})" if w.link else "") for w in live)
            continue
        for w in lapsed:
            o.reason += f"; the waiver for it expired on {w.expires}"
        if live:
            shown = ", ".join(uncovered[:5]) + (f" and {len(uncovered) - 5} more" if len(uncovered) > 5 else "")
            o.reason += f"; waived only in part ({', '.join(w.describe() for w in live)}): not {shown}"
    used = [(w, counts[id(w)]) for w in waivers if counts[id(w)] and not w.expired(today)]
    stale = [w for w in waivers if not counts[id(w)] and not w.expired(today)]
    return WaiverReport(used, stale, expired)


NOT_JUDGED = ("skipped", "invalid_probe")


def failing_items(outcome: Any, rows: list[dict[str, Any]] | None) -> list[tuple[str | None, str]]:
    """(output, label) of each failure under a failing outcome: its comparisons that did not pass and that the case
    did not declare (``rows`` None: the outcome's own label, on an output not known)."""
    if rows is None:
        return [(None, outcome.label)]
    expected = set(outcome.expected or [])
    found = {
        (r["output"], r["label"])
        for r in rows
        if not r["passed"] and r["label"] not in NOT_JUDGED and r["label"] not in expected
    }
    if not found:  # failing against an expectation with a passing label: the label where it was seen
        found = {(r["output"], r["label"]) for r in rows if r["label"] == outcome.label} or {(None, outcome.label)}
    return sorted(found, key=lambda item: (item[0] or "", item[1]))
