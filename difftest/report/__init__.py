"""HTML report: jinja2 templates (autoescaped) fed with plain data from the tables.

No HTML is built in Python; every string reaches the page through a template
and is escaped there. The report is self-contained: an inline stylesheet and
small inline scripts, plus a local copy of Vega in ``assets/`` for the charts;
nothing is loaded from the network.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..candidates import variant_findings
from ..classify import LABELS, severity
from ..recorded import Recorded
from ..tables import read_table
from .charts import copy_assets
from .details import DETAIL_LABELS, comparison_details, write_repro

STATUS_ORDER = {"fail": 0, "xfail": 1, "waived": 2, "skipped": 3, "pass": 4, "not_applicable": 5}
PASSING = {label for label, (passes, _) in LABELS.items() if passes}
LOG_TAIL_BYTES = 20_000


def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("difftest.report", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["seconds"] = lambda v: "—" if v is None else f"{v:.2f} s"
    return env


def render(run_dir: Path, charts: bool = True, phases: dict[str, float] | None = None,
           new_failures: set[tuple[str, str]] | None = None) -> Path:
    """Write index.html, one page per case and repro bundles for failures; returns the index path."""
    from ..execute_names import slug
    from ..judge import run_outcomes
    from .history import trend

    run = read_table(run_dir, "runs").to_dicts()[0]
    cases = read_table(run_dir, "cases").to_dicts()
    tensors = read_table(run_dir, "tensors", without_data=True).to_dicts()
    comparisons = read_table(run_dir, "comparisons").to_dicts()
    outcomes, waiver_report = run_outcomes(run_dir, cases, comparisons)
    env = environment()
    run_view = _run_view(run, tensors)
    run_view["phases"] = phases if phases is not None else json.loads(run.get("phase_seconds") or "{}")
    slowest = _slowest(cases, tensors)
    candidates = [b for b in run["backends_requested"] if b != run["reference"]]
    by_case: dict[str, dict[str, Any]] = defaultdict(dict)
    for o in outcomes:
        by_case[o.case][o.candidate] = o
    history = trend(run_dir, outcomes)
    rows = []
    for case in cases:
        cells = [by_case[case["case"]].get(c) for c in candidates]
        statuses = [cell.status for cell in cells if cell is not None]
        worst = min(statuses, key=lambda s: STATUS_ORDER[s]) if statuses else "skipped"
        since = {c: history["since"].get((case["case"], c)) for c in candidates} if history else {}
        rows.append({"case": case, "page": f"cases/{slug(case['case'])}.html", "cells": cells, "status": worst,
                     "since": since})
    rows.sort(key=lambda r: (STATUS_ORDER[r["status"]], r["case"]["case"]))
    label_counts = sorted(Counter(o.label for o in outcomes).items(), key=lambda kv: (severity(kv[0]) * -1, kv[0]))
    status_counts = Counter(o.status for o in outcomes)
    index = run_dir / "index.html"
    index.write_text(env.get_template("index.html").render(
        run=run_view, rows=rows, candidates=candidates, label_counts=label_counts, status_counts=status_counts,
        failures=[o for o in outcomes if o.failed and (new_failures is None or (o.case, o.candidate) in new_failures)],
        known_failures=[o for o in outcomes if o.failed and new_failures is not None
                        and (o.case, o.candidate) not in new_failures],
        has_baseline=new_failures is not None, labels=list(LABELS), history=history, slowest=slowest,
        waivers=waiver_report,
        tags=sorted({t for c in cases for t in (c["tags"] or [])}),
        suites=sorted({c["suite"] for c in cases}),
    ))
    pages = run_dir / "cases"
    pages.mkdir(exist_ok=True)
    if charts:
        copy_assets(run_dir)
    tensors_by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in tensors:
        tensors_by_case[t["case"]].append(t)
    comparisons_by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in comparisons:
        comparisons_by_case[c["case"]].append(c)
    looked_at = {c["case"] for c in comparisons if c["label"] in DETAIL_LABELS or not c["passed"]}
    case_tensors = _CaseTensors(run_dir, looked_at)
    template = env.get_template("case.html")
    for row in rows:
        case = row["case"]
        order = {p: i for i, p in enumerate(["*", *(case.get("probes") or [])])}
        case_comparisons = sorted(comparisons_by_case[case["case"]],
                                  key=lambda c: (c["candidate"], -severity(c["label"]), order.get(c["probe"], 99),
                                                 c["output"]))
        details, repro = [], None
        if case["case"] in looked_at:
            rec = Recorded(case_tensors(case["case"]).to_dicts())
            details = comparison_details(case, case_comparisons, rec, charts=charts)
            bundle = write_repro(case, case_comparisons, rec, run_dir / "repro" / slug(case["case"]))
            repro = bundle.relative_to(run_dir).as_posix() if bundle else None
        cells = [o for o in row["cells"] if o is not None and o.status not in ("skipped", "not_applicable")]
        findings = variant_findings({o.candidate: (o.label, o.label in PASSING) for o in cells},
                                    {"exporter": case.get("exporter") or "dynamo"})
        (run_dir / row["page"]).write_text(template.render(
            run=run_view, case=case, outcomes=[o for o in row["cells"] if o is not None],
            comparisons=case_comparisons, details=details, repro=repro,
            tensors=sorted(tensors_by_case[case["case"]], key=lambda t: (order.get(t["probe"], 99), t["output"] or "",
                                                                        t["backend"], t["rerun"] or 0)),
            log=_log_tail(run_dir, case.get("log")),
            variants=findings, exports=json.loads(case.get("exports") or "{}"),
            localization=json.loads(case.get("localization") or "{}"),
            traced=_traced_probes(case), invalid_probes=_invalid_probes(case_comparisons),
            controls=_controls(case, case_comparisons),
            not_localized=_not_localized(row["cells"], json.loads(case.get("localization") or "{}")),
            command=_command(case, run), since=row["since"],
        ))
    return index


def _run_view(run: dict[str, Any], tensors: list[dict[str, Any]]) -> dict[str, Any]:
    providers: dict[str, set[str]] = defaultdict(set)
    for t in tensors:
        for p in t.get("providers") or []:
            providers[t["backend"]].add(p)
    return {
        **run,
        "versions": json.loads(run["versions"] or "{}"),
        "skipped": json.loads(run["backends_skipped"] or "{}"),
        "providers": {k: sorted(v) for k, v in sorted(providers.items())},
    }


class _CaseTensors:
    """One case's tensors with their data: from its part file (one case in memory at a time); for runs
    without parts (merged runs) every case the report looks at is read in one pass, on first need."""

    def __init__(self, run_dir: Path, wanted: set[str]):
        self.run_dir, self.wanted, self.all = run_dir, wanted, None

    def __call__(self, case_id: str):
        import polars as pl

        from ..execute_names import slug
        from ..tables import case_part

        part = case_part(self.run_dir, "tensors", slug(case_id))
        if part is not None:
            return part
        if self.all is None:
            frame = pl.scan_parquet(self.run_dir / "tensors.parquet").filter(
                pl.col("case").is_in(list(self.wanted))).collect()
            self.all = {key[0]: group for key, group in frame.partition_by("case", as_dict=True).items()}
        if case_id not in self.all:
            from ..tables import frame

            return frame("tensors", [])
        return self.all[case_id]


def _traced_probes(case: dict[str, Any]) -> list[str]:
    from ..probes import DISTRIBUTION_PROBES

    return [p for p in case.get("probes") or [] if p in DISTRIBUTION_PROBES]


def _invalid_probes(comparisons: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(probe, eager's refusal) for each generated probe the reference could not run, once per probe."""
    found: dict[str, str] = {}
    for c in comparisons:
        if c["label"] == "invalid_probe":
            found.setdefault(c["probe"], c["evidence"])
    return list(found.items())


def _controls(case: dict[str, Any], comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The controls the worker ran for this case, each with its worst verdict against the reference."""
    recorded = json.loads(case.get("controls") or "{}")
    rows = []
    for name, info in recorded.items():
        own = [c for c in comparisons if c["candidate"] == name]
        worst = max(own, key=lambda c: severity(c["label"])) if own else None
        if info.get("kind") == "fact":
            outcome = (("agrees with eager" if info.get("agrees") else "differs from eager") + f" ({info.get('evidence')})"
                       if info.get("ran") else f"not run: {info.get('reason')}")
            rows.append({"name": "export without the case's onnx_transform", "for": info.get("candidate"),
                         "because": "did the case's own rewrite make the gap?", "label": None, "outcome": outcome})
            continue
        outcome = (f"on probes {', '.join(info.get('probes') or [])}" if info.get("ran")
                   else f"not run: {info.get('reason')}")
        rows.append({"name": name, "for": info.get("for"), "because": info.get("because"),
                     "label": worst["label"] if worst else None, "outcome": outcome})
    return rows


def _not_localized(cells: list[Any], localized: dict[str, Any]) -> list[tuple[str, str]]:
    """Why a failing candidate has no localization, for every one that has none."""
    reasons = {
        "export_error": "the export failed: there is no graph to search",
        "runtime_error": "the runtime failed: there are no values to compare",
        "crash": "the worker died: there are no values to compare",
        "timeout": "the case timed out: there are no values to compare",
        "frozen_input": "a graph-level finding: the evidence names the input the graph ignores",
        "shape_specialized": "a graph-level finding: the evidence names the shapes where it breaks",
    }
    found = []
    for o in cells:
        if o is None or o.status not in ("fail", "xfail", "waived") or o.candidate in localized:
            continue
        reason = reasons.get(o.label)
        if reason is None:
            reason = ("it fails only on the " + str(o.probe) + " probe; localization runs on base"
                      if o.probe not in ("base", "*") else
                      "localization was off for this run (--localize-budget 0) or the candidate runs no ONNX graph")
        found.append((o.candidate, reason))
    return found


def _slowest(cases: list[dict[str, Any]], tensors: list[dict[str, Any]], limit: int = 10) -> list[dict[str, Any]]:
    """The slowest cases with their time split: export, session builds, runs (all backends, probes, reruns)."""
    from ..execute_names import slug

    run_time: dict[str, float] = defaultdict(float)
    session_time: dict[tuple[str, str], float] = {}
    for t in tensors:
        if t["output"] is not None and t["index"] == 0 and t["seconds"] is not None:
            run_time[t["case"]] += t["seconds"]
        if t["prepare_seconds"] is not None:
            session_time[(t["case"], t["backend"])] = t["prepare_seconds"]
    sessions: dict[str, float] = defaultdict(float)
    for (case_id, _), seconds in session_time.items():
        sessions[case_id] += seconds
    ranked = sorted(cases, key=lambda c: -(c.get("seconds") or 0))[:limit]
    return [{"case": c["case"], "page": f"cases/{slug(c['case'])}.html", "total": c.get("seconds"),
             "export": c.get("export_seconds"), "cached": c.get("export_cached"), "sessions": sessions[c["case"]],
             "runs": run_time[c["case"]]} for c in ranked]


def _log_tail(run_dir: Path, log: str | None) -> str | None:
    if not log:
        return None
    path = (run_dir / log).resolve()
    if not path.is_file() or run_dir.resolve() not in path.parents:
        return None
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - LOG_TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    return ("… (earlier output cut)\n" if size > LOG_TAIL_BYTES else "") + text if text.strip() else None


def _command(case: dict[str, Any], run: dict[str, Any]) -> str:
    import shlex

    backends = ",".join(run["backends_requested"])
    return f"difftest run {shlex.quote(case['path'] + '::' + case['name'])} --backends {shlex.quote(backends)}"


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.3g}" if abs(value) >= 1e-3 and abs(value) < 1e5 else f"{value:.2e}"
    return str(value)
