"""The trend across runs that live beside this one (``reports/*/``): counts per run, and since when each
case × candidate has had its current verdict."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

MAX_RUNS = 30


def earlier_runs(run_dir: Path) -> list[Path]:
    """Sibling runs of the same targets that started before this one, oldest first (at most MAX_RUNS)."""
    here = run_dir.resolve()
    mine, my_targets = _identity(here)
    found = []
    for sibling in here.parent.iterdir():
        if sibling == here or sibling.is_symlink() or not (sibling / "comparisons.parquet").is_file():
            continue
        started, targets = _identity(sibling)
        if started is not None and mine is not None and started < mine and targets == my_targets:
            found.append((started, sibling))
    return [path for _, path in sorted(found)][-MAX_RUNS:]


def trend(run_dir: Path, current: list[Any], ratios: dict[str, float] | None = None) -> dict[str, Any] | None:
    """Verdict counts per run (earlier runs, then this one), per case × candidate the run since which its
    current label has held, and per case its worst max-error ÷ tolerance in each run (a sparkline). Runs are
    named by their folder (``current`` is this run's). None when there is no earlier run."""
    from ..judge.expectations import outcomes
    from ..record.tables import read_table, row_dicts

    runs = earlier_runs(run_dir)
    if not runs:
        return None
    history: list[tuple[str, dict[tuple[str, str], str]]] = []
    per_case: list[dict[str, float]] = []
    for path in runs:
        try:
            cases = row_dicts(read_table(path, "cases"), "cases")
            comparisons = read_table(path, "comparisons").to_dicts()
            results = outcomes(cases, comparisons)
        except Exception:
            continue  # a damaged old run must not break today's report
        history.append((path.name, {(o.case, o.candidate): o.label for o in results}))
        per_case.append(by_case(worst_ratios(comparisons)))
    history.append((run_dir.name, {(o.case, o.candidate): o.label for o in current}))
    per_case.append(ratios or {})
    counts = [(name, dict(Counter(labels.values()).most_common())) for name, labels in history]
    since: dict[tuple[str, str], str] = {}
    for key, label in history[-1][1].items():
        first = history[-1][0]
        for name, labels in reversed(history[:-1]):
            if labels.get(key) != label:
                break
            first = name
        since[key] = first
    cases = {case for run in per_case for case in run}
    series = {case: [run.get(case) for run in per_case] for case in cases}
    return {
        "counts": counts,
        "since": since,
        "labels": sorted({label for _, c in counts for label in c}),
        "current": run_dir.name,
        "series": series,
    }


def worst_ratios(comparisons: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(candidate, case) -> the largest |Δ| ÷ (atol + rtol·|reference|) over its comparisons."""
    worst: dict[tuple[str, str], float] = {}
    for c in comparisons:
        ratio = c.get("tolerance_ratio")
        if ratio is not None:
            key = (c["candidate"], c["case"])
            worst[key] = max(worst.get(key, 0.0), ratio)
    return worst


def by_case(worst: dict[tuple[str, str], float]) -> dict[str, float]:
    """The worst ratio per case, over its candidates."""
    cases: dict[str, float] = {}
    for (_, case), ratio in worst.items():
        cases[case] = max(cases.get(case, 0.0), ratio)
    return cases


def _identity(path: Path) -> tuple[str | None, tuple[str, ...]]:
    """(start time, suite targets by file name) of a stored run; runs of other suites are not its history."""
    from ..record.tables import read_table, row_dicts

    try:
        row = row_dicts(read_table(path, "runs"), "runs")[0]
    except Exception:
        return None, ()
    return row["started"], tuple(sorted(Path(t).name for t in row["targets"] or []))
