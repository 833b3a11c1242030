"""The Python API: :func:`check` one model in this process, :func:`run` suites in workers (the CLI's ``run`` is a
thin layer over it), and :class:`Session`, a run folder that several checks write into (the pytest plugin's).

    import difftest

    result = difftest.check(model, (x,), backends=["ort-cpu"])
    print(result)                 # one block per candidate: verdict, blame, the evidence per output
    result.verdicts               # polars DataFrame: one row per candidate × probe × output
    result.raise_for_failures()   # AssertionError whose message is the evidence
    result.report("report/")      # the same HTML a run writes

Each ``check`` (and each case of a ``Session``) runs in a child forked from the calling process, as a run's cases
do (see ``worker.pool``): the live model gets there with the fork, nothing the case does (autocast, a default
dtype, a patched module, an exporter's caches) comes back, and a model that crashes is a ``crash`` verdict instead
of the caller's death. The verdicts are judged here, from the rows the child recorded. ``isolate="none"`` runs
in the calling process instead (for a debugger): the process state a case changes is put back and said. A check
has no timeout; for timeouts and many models, declare cases in a suite file and use :func:`run`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .backends import DEFAULT_CHECK_CANDIDATES
from .errors import UsageError
from .exitcodes import ExitCode
from .worker.task import CONTROL_BUDGET

# difftest.check localizes only when asked (localize_budget=60): one model in a user's test, where a failing
# candidate's localization would add seconds to every red test; `difftest run` localizes by default.
CHECK_LOCALIZE_BUDGET = 0.0
PASSING = ("pass", "xfail", "waived", "skipped", "not_applicable")
EVIDENCE_LINES = 4  # per candidate in the text form; the DataFrame and the report hold every one


class Result:
    """What difftest found for one model (``check``) or one run (``run``): outcomes per case × candidate, the
    verdicts behind them, and the run folder they were recorded in."""

    def __init__(
        self,
        run_dir: Path,
        outcomes: list[Any],
        comparisons: list[dict[str, Any]] | None = None,
        title: str = "difftest",
    ):
        self.run_dir = Path(run_dir)
        self.outcomes = outcomes
        self._comparisons = comparisons
        self.title = title
        self._session: Session | None = None  # keeps a check's temporary run folder alive as long as its result
        self.checked = False  # someone looked at the verdict (passed, failures, verdicts, raise_for_failures)
        self.more_hint = "result.verdicts has them all"  # where the evidence the text form leaves out is
        self.report_hint: str | None = None  # a last line for a failure: where the full report is
        self.saved_onnx: Path | None = None  # where check(save_onnx=...) copied the export

    @property
    def verdicts(self) -> Any:
        """Every comparison as a polars DataFrame: one row per case × candidate × probe × output, with the
        label, whether it passed, the error metrics, the tolerance, the evidence and the blame."""
        from .record.tables import frame, read_table

        self.checked = True
        if self._comparisons is None:
            return read_table(self.run_dir, "comparisons")
        return frame("comparisons", self._comparisons)

    @property
    def passed(self) -> bool:
        """No unexpected failure (expected failures, waived ones, skips and non-applicable candidates pass)."""
        self.checked = True
        return all(o.status in PASSING for o in self.outcomes)

    @property
    def compared(self) -> bool:
        """Whether any candidate ran and was judged (not every one skipped or not applicable)."""
        return any(o.status not in ("skipped", "not_applicable") for o in self.outcomes)

    @property
    def skip_reason(self) -> str:
        """Why nothing was compared: each candidate's reason."""
        return "; ".join(f"{o.candidate}: {o.evidence or o.reason}" for o in self.outcomes) or "no candidate"

    @property
    def failures(self) -> list[Any]:
        self.checked = True
        return [o for o in self.outcomes if o.status not in PASSING]

    def raise_for_failures(self) -> "Result":
        """Raise an ``AssertionError`` whose message is the evidence when anything failed unexpectedly, or when
        nothing was compared at all (every candidate skipped): that is not a pass."""
        __tracebackhide__ = True  # pytest shows the evidence, not difftest's frames
        if not self.passed:
            raise AssertionError(str(self))
        if self.outcomes and not self.compared:
            raise NothingCompared(
                f"{self.title}: nothing was compared, every candidate was skipped ({self.skip_reason})"
            )
        return self

    def __str__(self) -> str:
        comparisons = self._comparisons if self._comparisons is not None else self.verdicts.to_dicts()
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for c in comparisons:
            by_key.setdefault((c["case"], c["candidate"]), []).append(c)
        failed = self.failures
        verdict = "PASS" if not failed else f"FAIL ({len(failed)} of {len(self.outcomes)} results unexpected)"
        lines = [f"{self.title}: {verdict}"]
        for case_id in dict.fromkeys(o.case for o in self.outcomes):
            here = [o for o in self.outcomes if o.case == case_id]
            if len({o.case for o in self.outcomes}) > 1:
                if all(o.status in PASSING for o in here):
                    continue  # a suite's text form lists what needs reading; the report lists everything
                lines.append(f"{case_id}")
            width = max(len(o.candidate) for o in here)
            for o in here:
                lines.extend(candidate_evidence(o, by_key.get((o.case, o.candidate), []), width, self.more_hint))
        if failed and self.report_hint:
            lines.append(self.report_hint)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<difftest {type(self).__name__} {'passed' if self.passed else 'failed'}: {self.run_dir}>"

    def report(self, path: str | Path | None = None) -> Path:
        """Write the HTML report (and JUnit, summary.json) for these results; returns the index page.

        Without ``path`` it goes into the run folder (give one for a ``check`` that ran in a temporary folder:
        that folder is removed with the result)."""
        from .record.tables import consolidate
        from .runner import finish

        target = Path(path) if path is not None else self.run_dir
        if target.resolve() != self.run_dir.resolve():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.run_dir, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))
        if (target / "parts").is_dir():  # a session's cases are parts until the session is reported
            for table in ("cases", "tensors"):
                consolidate(target, table)
        finish(target, rejudge=not (target / "comparisons.parquet").exists())
        return target / "index.html"


class Run(Result):
    """A finished run of suites (``run``): its exit code says what the CLI would exit with."""

    def __init__(self, result: Any):
        super().__init__(result.run_dir, result.outcomes, title=f"difftest run {Path(result.run_dir).name}")
        self.exit_code: ExitCode = result.exit_code
        self.seconds: float = result.seconds
        self.waivers = result.waivers
        self.new_failures = result.new_failures

    @property
    def passed(self) -> bool:
        return self.exit_code == ExitCode.OK

    def summary(self) -> str:
        """The one-screen summary the CLI prints at the end of a run."""
        from .record.tables import read_table, row_dicts
        from .report.summary import format_summary

        cases = row_dicts(read_table(self.run_dir, "cases"), "cases")
        row = row_dicts(read_table(self.run_dir, "runs"), "runs")[0]
        return format_summary(
            self.run_dir,
            cases,
            self.outcomes,
            (row["backends_skipped"] or {}),
            row["seconds"],
            self.waivers,
        )

    def __str__(self) -> str:
        return self.summary()


class NothingCompared(AssertionError):
    """``raise_for_failures`` on a result where every candidate was skipped: no verdict to pass."""


def candidate_evidence(
    outcome: Any, comparisons: list[dict[str, Any]], width: int, more: str = "result.verdicts has them all"
) -> list[str]:
    """Polygraphy-style: the candidate's verdict on one line, then the evidence of each output that needs reading
    (every failing one; for a pass, the worst)."""
    from .judge.classify import severity

    status = {
        "pass": "ok",
        "fail": "FAIL",
        "xfail": "expected",
        "waived": "waived",
        "skipped": "skipped",
        "not_applicable": "n/a",
    }[outcome.status]
    head = f"  {outcome.candidate:<{width}}  {outcome.label:<12} {status}"
    if outcome.blame and outcome.status == "fail":
        head += f"  [blame: {outcome.blame}]"
    if outcome.status in ("skipped", "not_applicable"):
        return [f"{head}: {outcome.evidence}"]
    if outcome.status == "xfail":
        head += f" ({outcome.scope or outcome.reason})"
    training = outcome.status == "fail" and outcome.blame_rule == "training_mode"
    if training:  # nothing else is worth reading until the model is in eval mode
        head += "  call model.eval() first: the model was checked in training mode"
    lines = [head]
    failing = [c for c in comparisons if not c["passed"]]
    shown = failing or sorted(comparisons, key=lambda c: -severity(c["label"]))[:1]
    from .judge.compare import describe_statistics

    for c in shown[:EVIDENCE_LINES]:
        where = "every output" if c["output"] == "*" else f"{c['output']!r}"
        probe = "" if c["probe"] == "*" else f" on probe {c['probe']}"
        lines.append(f"      {where}{probe}: {c['label']}: {c['evidence']}")
        if not c["passed"] and c.get("min_atol") is not None:
            lines.append(f"        {describe_statistics(c)}")
    if len(shown) > EVIDENCE_LINES:
        lines.append(f"      … and {len(shown) - EVIDENCE_LINES} more ({more})")
    if training and outcome.blame_reason:
        lines.append(f"      blame: model: {outcome.blame_reason}")
    if outcome.status in ("fail", "pass") and getattr(outcome, "next_step", None):  # a pass: a warning's step
        lines.append(f"      next step: {outcome.next_step}")
    return lines


class Session:
    """A run folder that checks write into, one case each: what ``check`` uses for one model, and what the pytest
    plugin keeps for a whole test session (one report for all of it).

    ``out`` None: a temporary folder, removed when the session and the results that use it are gone."""

    def __init__(
        self,
        out: str | Path | None = None,
        *,
        backends: Sequence[str] | str | None = None,
        probes: Sequence[str] | str | None = None,
        exporter: str | None = None,
        oracle: bool = True,
        reruns: int = 1,
        localize_budget: float = CHECK_LOCALIZE_BUDGET,
        control_budget: float = CONTROL_BUDGET,
        cache: bool = True,
        cache_dir: str | None = None,
        capture_output: bool = True,
        isolate: str = "case",
    ):
        from . import backends as backend_table
        from .backends.candidates import parse_list, split_specs
        from .run_config import RunConfig, validate

        specs = split_specs(backends) if isinstance(backends, str) else list(backends or DEFAULT_CHECK_CANDIDATES)
        self.candidates = [c.name for c in parse_list(",".join(specs))]  # a bad spec is a usage error now
        self.defaults = list(self.candidates)  # a check's candidates unless it names its own
        self.reference = backend_table.REFERENCE
        self.oracle = backend_table.ORACLE if oracle else None
        self.config = RunConfig(
            targets=[],
            backends=[self.reference, *self.candidates],
            exporter=exporter,
            probes=_probes(probes),
            reruns=reruns,
            oracle=oracle,
            localize_budget=localize_budget,
            control_budget=control_budget,
            use_cache=cache,
            cache_dir=cache_dir,
        )
        validate(self.config)
        self._temporary = None if out is not None else tempfile.TemporaryDirectory(prefix="difftest-")
        self.run_dir = Path(out) if out is not None else Path(self._temporary.name)
        from .runner import prepare_dir

        prepare_dir(self.run_dir)
        if (self.run_dir / "runs.parquet").exists() or (self.run_dir / "parts").exists():
            raise UsageError(f"{self.run_dir} already holds a run; choose another folder")
        self.run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.started = time.time()
        self.capture_output = capture_output
        if isolate not in ("case", "none"):
            raise UsageError(
                f"isolate must be 'case' (each check in a forked child, the default) or 'none' (in this "
                f"process, for debugging), got {isolate!r}"
            )
        self.isolate = isolate
        process_baseline()  # the process state checks start from, taken before the first one runs
        self._ids: set[str] = set()
        self._targets: list[str] = []
        from .record.tables import PartManifest

        self._manifest = PartManifest(self.run_dir)
        self._reasons: dict[str, str | None] = {}  # backend -> why it cannot run here (None: it can), asked once
        self._ran: dict[str, tuple[str, list[str]]] = {}  # part key -> (case id, the candidates its check ran)
        self._row: dict[str, Any] | None = None  # the runs table's row, less what changes per check
        self._row_for: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # (targets, candidates) it was made for

    # -- running ---------------------------------------------------------------------------------------------

    def check(
        self,
        module: Any,
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        source: str | None = None,
        backends: Sequence[str] | str | None = None,
        save_onnx: str | Path | None = None,
        **case_options: Any,
    ) -> Result:
        """Run one model as a case of this session; see :func:`check`. ``source``: the file the case is named
        after (default: the file that defines the model's class). ``backends``: this check's candidates (default:
        the session's); they join the session's report, where the other candidates are not applicable to it.
        ``save_onnx``: where to copy difftest's own export of the model (the graph the candidates ran)."""
        from .suite.cases import CASE_OPTIONS, CaseDef, CaseRef, build

        candidates = self._join(backends)

        unknown = sorted(set(case_options) - set(CASE_OPTIONS))
        if unknown:
            raise TypeError(
                f"check() got unknown option(s) {', '.join(unknown)}; the case options are {', '.join(CASE_OPTIONS)}"
            )
        args = args if isinstance(args, tuple) else (args,)
        name = name or type(module).__name__
        from .suite.cases import Case

        definition = CaseDef(factory=lambda: Case(module, args, kwargs, **case_options), name=name)
        try:
            built = build(definition)
        except ValueError as exc:  # CaseDefinitionError and a bad exporter name: the caller's own mistake
            raise TypeError(f"check(): {exc}") from None
        ref = CaseRef(source or _source_of(module), self._unique(name))
        result = self._run(ref, built, candidates=candidates)
        if save_onnx is not None:
            result.saved_onnx = self._save_onnx(ref, Path(save_onnx))
        return result

    def _save_onnx(self, ref: Any, target: Path) -> Path | None:
        """Copy the case's own export (difftest's, not a file the case was given) to ``target``; a warning says
        why when there is none."""
        import warnings

        from .record.tables import case_part, row_dicts

        cases = case_part(self.run_dir, "cases", _slug(ref.id))
        row = row_dicts(cases, "cases")[0] if cases is not None else {}
        exports = row.get("exports") or {}
        own = [info for name, info in exports.items() if info.get("exporter") in ("dynamo", "torchscript")]
        made = next((info for info in own if info.get("onnx_path")), None)
        if made is None:
            why = (
                (own[0].get("error") or "it failed")
                if own
                else (
                    "the case runs the ONNX file it was given, and difftest's own export was not needed as a control"
                    if row.get("exporter") == "file"
                    else "no export was made (no candidate runs ONNX, or the case failed before exporting)"
                )
            )
            warnings.warn(f"save_onnx={str(target)!r}: nothing saved: {str(why).splitlines()[0][:300]}", stacklevel=3)
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.run_dir / made["onnx_path"], target)
        return target

    def run_definition(self, definition: Any, ref: Any) -> Result:
        """Run a declared ``@case`` factory (the pytest plugin's collected items) as a case of this session."""
        return self._run(ref, None, definition)  # the factory runs where the case does

    def _join(self, backends: Sequence[str] | str | None) -> list[str]:
        """A check's own candidates, added to the session's (in its runs row and report)."""
        from .backends.candidates import parse_list, split_specs

        if backends is None:
            return list(self.defaults)
        specs = split_specs(backends) if isinstance(backends, str) else list(backends)
        names = [c.name for c in parse_list(",".join(specs)) if c.name not in (self.reference, self.oracle)]
        if not names:
            raise UsageError(
                f"backends {','.join(specs) or '(none)'}: no candidate to compare with the reference "
                f"{self.reference}; name one, e.g. ort-cpu"
            )
        for name in names:
            if name not in self.candidates:
                self.candidates.append(name)
        return names

    def _run(self, ref: Any, built: Any, definition: Any = None, candidates: list[str] | None = None) -> Result:
        candidates = list(self.defaults) if candidates is None else candidates
        task = self._task(ref, candidates)
        log = self.run_dir / "logs" / f"{_slug(ref.id)}.log"
        log.parent.mkdir(exist_ok=True)
        produced = self._produce(task, built, definition, str(log) if self.capture_output else None)
        case, tensors = produced["case"], produced["tensors"]
        if definition is not None:
            case["tags"] = sorted(set(case.get("tags") or []) | set(definition.tags))
        case["log"] = f"logs/{log.name}" if self.capture_output else None
        return self._record(ref, case, tensors, candidates)

    def _produce(self, task: Any, built: Any, definition: Any, log: str | None) -> dict[str, Any]:
        """The case's rows: made in a child forked from this process (``isolate="case"``) or, with
        ``isolate="none"`` (or where this process cannot be forked), here, putting back the state the case
        changed. Either way the process state starts as it was before this process's first check."""
        from .worker import execute, process_state
        from .worker.pool import Failure, redirected_output, run_isolated
        from .worker.task import seed

        def rows() -> dict[str, Any]:
            seed()
            if built is not None:
                return execute.run_built(task, built)
            return execute.run_definition(task, definition)

        def from_baseline() -> list[str]:
            inherited = process_state.restore(process_baseline())
            return [
                f"this process had changed process state since its first check: {c}; the check ran with it put back"
                for c in inherited.changed
            ] + [f"this process had changed process state that cannot be put back: {c}" for c in inherited.unrestorable]

        mode, why = self.isolate, None
        if mode == "case":
            why = _cannot_fork()
            mode = "none" if why else mode
        if mode == "none":
            inherited = from_baseline() if why else []
            before = process_state.snapshot()
            with redirected_output(log):
                produced = rows()
            restored = process_state.restore(before)
            notes = ([f"ran in the calling process, not a child of it: {why}"] if why else []) + inherited
            notes += [f"the case changed process state: {c}; put back" for c in restored.changed]
            notes += [f"the case changed process state that cannot be put back: {c}" for c in restored.unrestorable]
            produced["case"]["isolation"] = notes
            return produced
        outcome = run_isolated(task.ref.id, rows, log, prepare=from_baseline)
        if isinstance(outcome, Failure):
            from .worker.case_run import CaseRow, record

            described = {"tags": list(definition.tags), "description": definition.doc} if definition else {}
            return record(CaseRow.for_failure(task, outcome, **described), [])
        return outcome

    def _record_unbuilt(self, ref: Any, definition: Any, status: str, message: str) -> Result:
        from .worker.case_run import CaseRow

        case = CaseRow.for_task(
            self._task(ref),
            status=status,
            stage="build",
            message=message,
            tags=list(definition.tags),
            description=definition.doc,
            seconds=0.0,
        )
        return self._record(ref, case.as_row(), [])

    def _record(
        self, ref: Any, case: dict[str, Any], tensors: list[dict[str, Any]], candidates: list[str] | None = None
    ) -> Result:
        from .judge.expectations import outcomes
        from .judge.verdicts import RunContext, judge_case

        candidates = list(self.defaults) if candidates is None else candidates
        self._manifest.write(_slug(ref.id), ref.id, case, tensors)
        self._ran[_slug(ref.id)] = (ref.id, candidates)
        if ref.path not in self._targets:
            self._targets.append(ref.path)
        self._write_runs_row()
        context = RunContext(
            run=self.run_id,
            reference=self.reference,
            oracle=self.oracle,
            candidates=candidates,
            skipped=self._availability(candidates)[1],
        )
        comparisons = judge_case(case, tensors, context)
        return Result(self.run_dir, outcomes([case], comparisons), comparisons, title=f"difftest check {ref.id}")

    def _task(self, ref: Any, candidates: list[str] | None = None) -> Any:
        from .runner import task_for

        return task_for(
            self.config, ref, self.run_id, self.run_dir, self._availability(candidates)[0], self.reference, self.oracle
        )

    def _availability(self, candidates: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
        """(backends that run here, {backend: why not}) for these candidates (default: the session's); each
        backend is asked once per session."""
        from .backends.candidates import make
        from .runner import availability

        def reason(name: str) -> str | None:
            if name not in self._reasons:
                self._reasons[name] = make(name).unavailable_reason()
            return self._reasons[name]

        return availability(
            [self.reference, *(self.candidates if candidates is None else candidates)],
            self.reference,
            self.oracle,
            reason,
        )

    def _unique(self, name: str) -> str:
        """Case names are ids within a run: a second check of the same class gets a numbered name."""
        candidate, n = name, 1
        while f"{candidate}" in self._ids:
            n += 1
            candidate = f"{name}_{n}"
        self._ids.add(candidate)
        return candidate

    def _write_runs_row(self) -> None:
        """The runs table, kept current as checks arrive: its fixed facts (commit, GPU, versions, environment) are
        asked once per session, the repositories again only when a check comes from another file."""
        from .record.tables import write_table
        from .provenance import repositories, runs_row
        from .worker.pool import environment_facts

        if self._row is None:
            available, skipped = self._availability()
            self._row = runs_row(
                self.run_id,
                self.config,
                [self.reference, *self.candidates],
                available,
                skipped,
                self.reference,
                self.started,
            )
            self._row.update(oracle=self.oracle, environment=environment_facts(), repositories={})
        made_for = (tuple(self._targets), tuple(self.candidates))
        if self._row_for != made_for:  # a check from another file, or with candidates of its own
            if self._row_for is None or self._row_for[0] != made_for[0]:
                self._row["repositories"] = repositories(self._targets)
            self._row_for = made_for
            available, skipped = self._availability()
            self.config.backends = [self.reference, *self.candidates]
            config = dataclasses.replace(self.config, targets=list(self._targets), out=str(self.run_dir))
            self._row.update(
                targets=list(self._targets),
                config=json.dumps(dataclasses.asdict(config)),
                backends_requested=[self.reference, *self.candidates],
                backends_available=available,
                backends_skipped=skipped,
            )
        row = {
            **self._row,
            "seconds": time.time() - self.started,
            "finished": dt.datetime.now().isoformat(timespec="seconds"),
            "environment": {**self._row["environment"], "repositories": self._row["repositories"]},
        }
        row.pop("repositories")
        write_table(self.run_dir, "runs", [row])

    # -- the whole session -------------------------------------------------------------------------------------

    def finish(self) -> Run:
        """Every case of the session judged together, and the report, JUnit and summary written."""
        from .record.tables import consolidate
        from .runner import finish

        keys = self._manifest.keys()
        if not keys:
            raise UsageError(f"{self.run_dir}: no case ran in this session, so there is nothing to report")
        self._not_applicable_rows()
        for table in ("cases", "tensors"):
            consolidate(self.run_dir, table, keys)
        self._write_runs_row()
        return Run(finish(self.run_dir, rejudge=True))

    def _not_applicable_rows(self) -> None:
        """A check that ran candidates of its own is judged with the session's other candidates too: each one it did
        not ask for gets a row saying it is not applicable to that check (not a lost result, not a pass)."""
        from .record.tables import case_part, row_dicts

        for key, (case_id, ran) in self._ran.items():
            missing = [c for c in self.candidates if c not in ran]
            if not missing:
                continue
            cases, tensors = case_part(self.run_dir, "cases", key), case_part(self.run_dir, "tensors", key)
            if cases is None or tensors is None:
                continue
            extra = [
                {
                    "run": self.run_id,
                    "case": case_id,
                    "probe": "*",
                    "backend": name,
                    "rerun": 0,
                    "status": "skipped",
                    "stage": "run",
                    "message": f"not applicable: this check asked for {', '.join(ran)} only",
                }
                for name in missing
            ]
            self._manifest.write(key, case_id, row_dicts(cases, "cases")[0], row_dicts(tensors, "tensors") + extra)
            self._ran[key] = (case_id, [*ran, *missing])

    def cleanup(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()


def check(
    module: Any,
    args: Any = (),
    kwargs: dict[str, Any] | None = None,
    *,
    backends: Sequence[str] | str | None = None,
    probes: Sequence[str] | str | None = None,
    exporter: str | None = None,
    expect: Any = None,
    out: str | Path | None = None,
    name: str | None = None,
    oracle: bool = True,
    localize_budget: float = CHECK_LOCALIZE_BUDGET,
    control_budget: float = CONTROL_BUDGET,
    cache: bool = True,
    isolate: str = "case",
    save_onnx: str | Path | None = None,
    **case_options: Any,
) -> Result:
    """Export ``module`` called as ``module(*args, **kwargs)``, run it on the candidates and on PyTorch eager (the
    reference), and classify every difference; in a child forked from this process (``isolate="none"``: in this
    process, for debugging; see the module docstring).

    ``backends``: candidate specs (default ``ort-cpu`` and ``ort-cuda``, which is recorded as skipped where there
    is no CUDA provider), e.g. ``["ort-cpu", "ort-cpu[opt=disable]", "onnx-ref"]``. ``probes``: which inputs to
    run (default all that apply: the given ones, other values, ties, other sizes on ``dynamic_axes`` …).
    ``expect``: the verdict the case expects (``"tie_break"``, or ``{"ort-cuda": "numeric"}``), as in ``@case``.
    ``out``: keep the run folder there (default: a temporary one, removed with the result). Any other keyword is
    a case option (``dynamic_axes``, ``rtol``, ``atol``, ``tolerances``, ``output_masks``, ``onnx_transform``,
    ``bake_kwargs``, ``opset``, ``samples``, ``tags``, ``description``, ``output_names``).

    ``onnx``: your own ONNX file (a path, bytes or an ``onnx.ModelProto``), the one you ship: the candidates run it
    instead of an export difftest makes, judged against ``module``; difftest's own export of ``module`` is the
    control that says whether the file (your export step, your post-processing) or the runtime is to blame.
    ``save_onnx``: copy difftest's own export (dynamic axes under your names) there.
    """
    session = Session(
        out,
        backends=backends,
        probes=probes,
        exporter=exporter,
        oracle=oracle,
        localize_budget=localize_budget,
        control_budget=control_budget,
        cache=cache,
        isolate=isolate,
    )
    result = session.check(module, args, kwargs, name=name, expect=expect, save_onnx=save_onnx, **case_options)
    result._session = session
    if out is not None:  # a kept run folder holds the tables `difftest run` writes, not only the per-case parts
        from .record.tables import consolidate, write_table

        for table in ("cases", "tensors"):
            consolidate(session.run_dir, table, session._manifest.keys())
        write_table(session.run_dir, "comparisons", result._comparisons or [])
    return result


def run(
    targets: Sequence[str] | str = ("suites",), *, echo: Callable[[str], None] | None = None, **options: Any
) -> Run:
    """Run suites as ``difftest run`` does (worker processes, timeouts, the whole pipeline to the report) and
    return the finished run. ``options`` are the run's settings by name: ``backends``, ``out``, ``keyword``,
    ``jobs``, ``exporter``, ``timeout``, ``probes``, ``baseline``, ``expectations`` … (see ``RunConfig``);
    ``echo`` receives the progress lines (default: none)."""
    from .backends.candidates import split_specs
    from .run_config import RunConfig
    from .runner import run as run_config

    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"run() got unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if isinstance(options.get("backends"), str):
        options["backends"] = split_specs(options["backends"])
    if "probes" in options:
        options["probes"] = _probes(options["probes"])
    config = RunConfig(targets=[targets] if isinstance(targets, str) else list(targets), **options)
    return Run(run_config(config, echo or (lambda line: None)))


_BASELINE: Any = None


def process_baseline() -> Any:
    """The process state as it was when this process first made a check session: what each check starts from."""
    global _BASELINE
    if _BASELINE is None:
        from .worker import process_state

        _BASELINE = process_state.snapshot()
    return _BASELINE


def _cannot_fork() -> str | None:
    """Why a check cannot run in a forked child here (None: it can)."""
    import os
    import sys

    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return f"forking is not available or not safe with torch on {sys.platform}"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA is initialised in this process, and a forked child cannot use it"
    return None


def _probes(probes: Sequence[str] | str | None) -> list[str]:
    from .suite.probes import ALL_PROBES, parse_probes

    if probes is None:
        return list(ALL_PROBES)
    try:
        return parse_probes(probes if isinstance(probes, str) else ",".join(probes))
    except ValueError as exc:
        raise UsageError(f"probes: {exc}") from None


def _source_of(module: Any) -> str:
    """The file a check's case is named after (``test_models::ResNet``), whose code its export cache key follows:
    the file that defines the model's class, or for a library's class (``torch.nn.Sequential``) the caller's."""
    import inspect
    import sys

    try:
        defined = inspect.getsourcefile(type(module))
    except (TypeError, OSError):
        defined = None
    library = type(module).__module__.split(".")[0] in ("torch", "functools", "builtins") or (
        defined is not None and "site-packages" in defined
    )
    if defined and not library:
        return str(Path(defined).resolve())
    ours = str(Path(__file__).resolve().parent)
    frame = sys._getframe(1)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(ours):
        frame = frame.f_back
    caller = frame.f_code.co_filename if frame is not None else "check.py"
    return str(Path(caller).resolve()) if not caller.startswith("<") else str(Path("check.py").resolve())


def _slug(case_id: str) -> str:
    from .record.names import slug

    return slug(case_id)
