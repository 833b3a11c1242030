"""The report stage: what people read. The HTML report (this module renders it: jinja2 templates, autoescaped,
fed with plain data from the tables), its views (``triage``, ``index_view``, ``case_view``, ``details``,
``charts``, ``history``, ``logs``), and the run's summary for terminals and CI (``summary``: the console block,
``summary.json``, JUnit XML, the exit code).

No HTML is built in Python; every string reaches the page through a template and is escaped there. The report is
self-contained: an inline stylesheet and small inline scripts, plus a local copy of Vega in ``assets/`` for the
charts; nothing is loaded from the network.

May import: record, suite, export, backends, judge.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..backends.candidates import variant_findings
from ..judge import vocabulary
from ..judge.classify import LABELS, severity
from ..judge.compare import describe_statistics
from ..judge.expectations import expect_text
from ..record.names import PSEUDO_BACKENDS, pseudo_backend
from ..record.recorded import Recorded
from ..record.tables import read_table, row_dicts
from .charts import copy_assets
from .details import DETAIL_LABELS, comparison_details, write_repro

STATUS_ORDER = {status.name: status.order for status in vocabulary.STATUS_TABLE}
PASSING = {label for label, (passes, _) in LABELS.items() if passes}


def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("difftest.report", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=visible,  # autoescape leaves NUL and other control bytes in: every value goes through this first
    )
    env.filters["num"] = _num
    env.filters["seconds"] = lambda v: "—" if v is None else f"{v:.2f} s"
    env.filters["expect"] = expect_text
    env.tests["timestamp"] = lambda v: bool(re.fullmatch(r"\d{8}-\d{6}", str(v)))
    env.globals["vocabulary"] = vocabulary  # labels, statuses and blame kinds come from the one table
    return env


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def visible(value: Any) -> Any:
    """A template value with control characters (NUL, escape sequences, bells; lone surrogates) written as ``\\xNN``:
    HTML cannot show them, and a browser may cut the page at a NUL."""
    if not isinstance(value, str) or not _CONTROL.search(value):
        return value
    import markupsafe

    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    return markupsafe.Markup(text) if isinstance(value, markupsafe.Markup) else text


def render(
    run_dir: Path,
    charts: bool = True,
    phases: dict[str, float] | None = None,
    new_failures: set[tuple[str, str]] | None = None,
    judged: tuple[list, list, list, Any] | None = None,
) -> Path:
    """Write index.html, one page per case and repro bundles for failures; returns the index path. ``judged``:
    (cases, comparisons, outcomes, waiver report) when the caller has read and judged them already."""
    from ..judge.expectations import run_outcomes
    from . import index_view, triage
    from .history import by_case as worst_by_case, trend, worst_ratios

    run = row_dicts(read_table(run_dir, "runs"), "runs")[0]
    tensors = row_dicts(read_table(run_dir, "tensors", without_data=True), "tensors")
    if judged is None:
        cases = row_dicts(read_table(run_dir, "cases"), "cases")
        comparisons = read_table(run_dir, "comparisons").to_dicts()
        outcomes, waiver_report = run_outcomes(run_dir, cases, comparisons)
    else:
        cases, comparisons, outcomes, waiver_report = judged
    env = environment()
    run_view = index_view.run_view(run, tensors)
    run_view["phases"] = phases if phases is not None else (run.get("phase_seconds") or {})
    candidates = [b for b in run["backends_requested"] if b != run["reference"]]
    worst = worst_ratios(comparisons)
    history = trend(run_dir, outcomes, worst_by_case(worst))
    rows = _index_rows(cases, outcomes, candidates, history)
    groups = triage.group_failures(outcomes, new_failures)
    index = run_dir / "index.html"
    index.write_text(
        _index_page(
            env,
            run_dir,
            run_view,
            rows,
            candidates,
            (cases, comparisons, outcomes, tensors),
            groups,
            worst,
            history,
            waiver_report,
            new_failures,
        )
    )
    (run_dir / "cases").mkdir(exist_ok=True)
    if charts:
        copy_assets(run_dir)
    pages = _CasePages(env, run_dir, run, run_view, candidates, tensors, comparisons, groups, charts)
    for row in rows:
        pages.write(row)
    return index


def _index_rows(
    cases: list[dict[str, Any]], outcomes: list[Any], candidates: list[str], history: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The matrix's rows: each case with its outcome per candidate, its worst status, and its history."""
    from . import index_view, triage

    by_case: dict[str, dict[str, Any]] = defaultdict(dict)
    for o in outcomes:
        by_case[o.case][o.candidate] = o
    rows = []
    for case in cases:
        cells = [by_case[case["case"]].get(c) for c in candidates]
        statuses = [cell.status for cell in cells if cell is not None]
        status = min(statuses, key=lambda s: STATUS_ORDER[s]) if statuses else "skipped"
        since = {c: history["since"].get((case["case"], c)) for c in candidates} if history else {}
        spark = index_view.sparkline(history["series"].get(case["case"], [])) if history else None
        rows.append(
            {
                "case": case,
                "page": triage.case_page(case["case"]),
                "cells": cells,
                "status": status,
                "since": since,
                "spark": spark,
            }
        )
    rows.sort(key=lambda r: (STATUS_ORDER[r["status"]], r["case"]["case"]))
    return rows


def _index_page(
    env,
    run_dir: Path,
    run_view: dict[str, Any],
    rows: list[dict[str, Any]],
    candidates: list[str],
    tables: tuple[list, list, list, list],
    groups: list[Any],
    worst: Any,
    history: Any,
    waiver_report: Any,
    new_failures: set | None,
) -> str:
    """index.html: the triage, the verdict cards, the charts and the matrix."""
    from . import index_view, triage
    from .logs import warnings_digest

    cases, comparisons, outcomes, tensors = tables
    patterns = triage.common_patterns(groups)
    # skipped and not-applicable results have their status card; a label card would count them twice
    label_counts = sorted(
        Counter(o.label for o in outcomes if o.status not in ("not_applicable", "skipped")).items(),
        key=lambda kv: (severity(kv[0]) * -1, kv[0]),
    )
    return env.get_template("index.html").render(
        run=run_view,
        rows=rows,
        candidates=candidates,
        label_counts=label_counts,
        status_counts=Counter(o.status for o in outcomes),
        groups=groups,
        headline=triage.headline(groups, patterns),
        patterns=patterns,
        patterned=[g for p in patterns for g in p.groups],
        page_of=triage.case_page,
        evidence_link=triage.evidence_link,
        has_baseline=new_failures is not None,
        labels=list(LABELS),
        history=history,
        slowest=index_view.slowest(cases, tensors, triage.case_page),
        waivers=waiver_report,
        numeric=index_view.numeric_breakdown(outcomes),
        class_flips=triage.class_flips(comparisons),
        strip=index_view.error_strip(worst, candidates, [r["case"]["case"] for r in rows]),
        warnings=warnings_digest(run_dir, cases),
        tags=sorted({t for c in cases for t in (c["tags"] or [])}),
        suites=sorted({c["suite"] for c in cases}),
    )


class _CasePages:
    """One page per case: its verdicts, evidence, controls, localization and its place among the failing pages."""

    def __init__(
        self,
        env,
        run_dir: Path,
        run: dict[str, Any],
        run_view: dict[str, Any],
        candidates: list[str],
        tensors: list[dict[str, Any]],
        comparisons: list[dict[str, Any]],
        groups: list[Any],
        charts: bool,
    ):
        from . import triage

        self.run_dir, self.run, self.run_view, self.candidates, self.charts = run_dir, run, run_view, candidates, charts
        self.template = env.get_template("case.html")
        self.tensors: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for t in tensors:
            self.tensors[t["case"]].append(t)
        self.comparisons: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in comparisons:
            self.comparisons[c["case"]].append(c)
        self.looked_at = {c["case"] for c in comparisons if c["label"] in DETAIL_LABELS or not c["passed"]}
        self.case_tensors = _CaseTensors(run_dir, self.looked_at)
        self.failing = list(dict.fromkeys(triage.case_page(group.case) for group in groups))  # in triage order
        self.position = {page: i for i, page in enumerate(self.failing)}

    def write(self, row: dict[str, Any]) -> None:
        from . import case_view, triage

        case = row["case"]
        order = {p: i for i, p in enumerate(["*", *(case.get("probes") or [])])}
        comparisons = sorted(
            self.comparisons[case["case"]],
            key=lambda c: (c["candidate"], -severity(c["label"]), order.get(c["probe"], 99), c["output"]),
        )
        outcomes = [o for o in row["cells"] if o is not None]
        identical = case_view.identical_outputs(self.tensors[case["case"]], self.candidates)
        details, repro = self._evidence(case, comparisons, outcomes, identical)
        cells = [o for o in outcomes if o.status not in ("skipped", "not_applicable")]
        findings = variant_findings(
            {o.candidate: (o.label, o.label in PASSING) for o in cells}, {"exporter": case.get("exporter") or "dynamo"}
        )
        localization = case.get("localization") or {}
        failing_localized, informative = case_view.split_localization(localization, outcomes)
        tensors = sorted(
            self.tensors[case["case"]],
            key=lambda t: (order.get(t["probe"], 99), t["output"] or "", t["backend"], t["rerun"] or 0),
        )
        (self.run_dir / row["page"]).write_text(
            self.template.render(
                run=self.run_view,
                case=case,
                outcomes=outcomes,
                anchor=triage.candidate_anchor,
                passing=all(o.status in ("pass", "skipped", "not_applicable") for o in outcomes),
                comparisons=comparisons,
                details=details,
                repro=repro,
                tensors=tensors,
                failures=[t for t in tensors if t["status"] == "error"],
                identical=identical,
                pseudo=pseudo_backend,
                pseudo_backends=PSEUDO_BACKENDS,
                log=case_view.log_tail(self.run_dir, case.get("log")),
                variants=findings,
                exports=(case.get("exports") or {}),
                localization=failing_localized,
                informative_localization=informative,
                traced=case_view.traced_probes(case),
                invalid_probes=case_view.invalid_probes(comparisons),
                controls=case_view.controls(case, comparisons),
                not_localized=case_view.not_localized(outcomes, localization),
                reproduce=case_view.reproduce(case, self.run, outcomes),
                **self._neighbours(row["page"]),
                relative=lambda path: _relative_link(self.run_dir, path),
                statistics=describe_statistics,
            )
        )

    def _evidence(
        self, case: dict[str, Any], comparisons: list[dict[str, Any]], outcomes: list[Any], identical: Any
    ) -> tuple[list[Any], str | None]:
        """The detail charts and the repro bundle of a case worth a closer look (a failure, a benign label)."""
        from ..record.names import slug

        if case["case"] not in self.looked_at:
            return [], None
        rec = Recorded(row_dicts(self.case_tensors(case["case"]), "tensors"))
        details = comparison_details(case, comparisons, rec, charts=self.charts, identical=identical)
        bundle = write_repro(
            case,
            comparisons,
            rec,
            self.run_dir / "repro" / slug(case["case"]),
            unexpected={o.candidate for o in outcomes if o.status == "fail"},
        )
        return details, bundle.relative_to(self.run_dir).as_posix() if bundle else None

    def _neighbours(self, page: str) -> dict[str, str | None]:
        """Links to the previous and next failing pages (for a failing page), or to the first one."""
        position, failing = self.position.get(page), self.failing
        return {
            "previous": f"../{failing[position - 1]}" if position else None,
            "next": f"../{failing[position + 1]}" if position is not None and position + 1 < len(failing) else None,
            "first_failure": None if position is not None or not failing else f"../{failing[0]}",
        }


def _relative_link(run_dir: Path, recorded: str | None) -> str | None:
    """A link from a case page to an artefact of the run (a model, a bundle), or None when it is not inside the
    run folder (an older run's absolute path that no longer resolves there)."""
    from ..record.tables import run_artifact

    found = run_artifact(run_dir, recorded)
    if found is None:
        return None
    return "../" + found.relative_to(run_dir.resolve()).as_posix()


class _CaseTensors:
    """One case's tensors with their data: from its part file (one case in memory at a time); for runs
    without parts (merged runs) every case the report looks at is read in one pass, on first need."""

    def __init__(self, run_dir: Path, wanted: set[str]):
        self.run_dir, self.wanted, self.all = run_dir, wanted, None

    def __call__(self, case_id: str):
        import polars as pl

        from ..record.names import slug
        from ..record.tables import case_part

        part = case_part(self.run_dir, "tensors", slug(case_id))
        if part is not None:
            return part
        if self.all is None:
            frame = (
                pl.scan_parquet(self.run_dir / "tensors.parquet")
                .filter(pl.col("case").is_in(list(self.wanted)))
                .collect()
            )
            self.all = {key[0]: group for key, group in frame.partition_by("case", as_dict=True).items()}
        if case_id not in self.all:
            from ..record.tables import frame

            return frame("tensors", [])
        return self.all[case_id]


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.3g}" if abs(value) >= 1e-3 and abs(value) < 1e5 else f"{value:.2e}"
    return str(value)
