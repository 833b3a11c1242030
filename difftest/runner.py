"""A whole run: find cases, run them in workers, record, judge, report. What a run is asked to do is
``run_config``; where its results came from, ``provenance``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import Interrupted, UsageError
from .exitcodes import ExitCode
from .provenance import repositories, runs_row
from .run_config import RunConfig, absolute_paths, check_resumable, default_jobs, validate


@dataclass
class RunResult:
    run_dir: Path
    outcomes: list[Any]
    exit_code: ExitCode
    seconds: float
    waivers: Any = None
    new_failures: set[tuple[str, str]] | None = None  # against the baseline, when one was given


def run(config: RunConfig, echo: Callable[[str], None] = print) -> RunResult:
    """Run the configured cases; a worker starts first so its imports overlap the suite discovery."""
    from .backends.candidates import parse_list
    from .worker.pool import WorkerPool

    candidates = parse_list(",".join(config.backends))  # a bad spec is a usage error before anything starts
    validate(config)
    config = absolute_paths(config)  # a case that changes directory cannot move the run's files
    jobs = config.jobs or default_jobs()
    threads = max(1, default_jobs() // jobs)
    pool = WorkerPool(
        jobs, config.timeout, threads=threads, memory_limit_mb=config.memory_limit_mb, isolate=config.isolate
    )
    pool.start(1)
    try:
        with _interruptible() as interrupted:
            return _run(config, candidates, pool, jobs, threads, echo, interrupted)
    finally:
        pool.close()


class _interruptible:
    """SIGTERM and SIGINT stop the run between results: the handler sets a flag the loop checks, the pool
    kills the workers' process groups, and what finished is written out. A second signal stops at once."""

    def __enter__(self) -> dict[str, str | None]:
        import signal

        self.flag: dict[str, str | None] = {"signal": None}
        self.previous = {}

        def handler(number: int, _frame: Any) -> None:
            if self.flag["signal"] is not None:
                raise Interrupted(signal.Signals(number).name)
            self.flag["signal"] = signal.Signals(number).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (an API caller's): no handlers, Ctrl-C as usual
                pass
        return self.flag

    def __exit__(self, *exc: Any) -> None:
        import signal

        for sig, previous in self.previous.items():
            signal.signal(sig, previous)


def _run(
    config: RunConfig,
    candidates: list[Any],
    pool: Any,
    jobs: int,
    threads: int,
    echo: Callable[[str], None],
    interrupted: dict[str, str | None],
) -> RunResult:
    from . import backends as backend_table
    from .suite.cases import CaseRef

    started = time.time()
    reference = backend_table.REFERENCE
    oracle = backend_table.ORACLE if config.oracle else None
    requested = [reference] + [c.name for c in candidates if c.name not in (reference, backend_table.ORACLE)]
    discovered = pool.discover(config.targets, config.keyword, requested + ([oracle] if oracle else []))
    found = [(CaseRef(path, name), None) for path, name in discovered["cases"]]
    if not found:
        raise UsageError(
            f"no cases found in {' '.join(config.targets)}"
            + (f" matching -k {config.keyword!r}" if config.keyword else "")
        )
    if discovered["problems"]:
        raise UsageError(discovered["problems"][0])
    if config.baseline and not (Path(config.baseline) / "comparisons.parquet").exists():
        raise UsageError(f"--baseline {config.baseline}: not a finished difftest run (no comparisons.parquet)")
    if config.shard:
        from .nightly.shards import durations_from, parse_shard, select

        index, total = parse_shard(config.shard)
        durations_dir = Path(config.durations) if config.durations else None
        if durations_dir is not None and not (durations_dir / "cases.parquet").exists():
            raise UsageError(f"--durations {durations_dir}: not a difftest run (no cases.parquet)")
        keep = select([ref.id for ref, _ in found], index, total, durations_from(durations_dir))
        found = [(ref, d) for ref, d in found if ref.id in keep]
        if not found:
            raise UsageError(f"--shard {config.shard}: this shard holds no case (only {total} shards for fewer cases?)")
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = prepare_dir(Path(config.out) if config.out else Path(config.reports_root) / run_id)
    plan = _Plan(
        run_dir,
        found,
        run_id,
        started,
        reference,
        oracle,
        requested,
        discovered["unavailable"],
        discovered.get("environment") or {},
    )
    with RunLock(run_dir):
        return _run_locked(config, plan, pool, jobs, threads, echo, interrupted)


@dataclass
class _Plan:
    """What discovery decided: where the run goes, which cases, which backends."""

    run_dir: Path
    found: list[Any]
    run_id: str
    started: float
    reference: str
    oracle: str | None
    requested: list[str]
    unavailable: dict[str, str | None]
    environment: dict[str, Any] = field(default_factory=dict)


def _run_locked(
    config: RunConfig,
    plan: _Plan,
    pool: Any,
    jobs: int,
    threads: int,
    echo: Callable[[str], None],
    interrupted: dict[str, str | None],
) -> RunResult:
    """The run, its folder locked: the run's row and files, the cases not yet done, each case's rows as it
    finishes, then the tables, the verdicts and the report."""
    from .record.names import slug
    from .record.tables import PartManifest, consolidate, write_table

    run_row, available = _start_run(config, plan, jobs, echo)
    run_dir, found = plan.run_dir, plan.found
    manifest = PartManifest(run_dir)
    expected = {slug(ref.id): ref for ref, _ in found}
    sources, tasks = _tasks_to_run(config, plan, manifest, run_row["run"], available, threads, echo)
    pool.start(min(jobs, len(tasks)))
    cases_started = time.time()
    finished = _record_cases(pool, tasks, manifest, sources, interrupted, echo)
    if interrupted["signal"] is not None:
        for table in ("cases", "tensors"):
            consolidate(run_dir, table, manifest.keys() & set(expected))
        echo(
            f"difftest: stopped by {interrupted['signal']} after {finished} of {len(tasks)} case(s); the finished "
            f"ones are kept in {run_dir}: finish with `difftest run ... --out {run_dir} --resume`"
        )
        raise Interrupted(interrupted["signal"])
    lost = manifest.verify(expected)
    for _, case_id, reason in lost:
        echo(f"  LOST {case_id}: {reason}")
    for table in ("cases", "tensors"):
        consolidate(run_dir, table, expected)
    run_row["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    run_row["seconds"] = time.time() - plan.started
    run_row["phase_seconds"] = {"cases": time.time() - cases_started}
    write_table(run_dir, "runs", [run_row])
    result = finish(run_dir, rejudge=True, baseline=Path(config.baseline) if config.baseline else None)
    _link_latest(run_dir, Path(config.reports_root))
    missing = [o for o in result.outcomes if o.candidate in config.require and o.status == "skipped"]
    if missing:
        shown = "; ".join(f"{o.case}: {o.reason}" for o in missing[:5])
        echo(f"difftest: required candidate(s) skipped in {len(missing)} case(s): {shown}")
        result.exit_code = ExitCode.USAGE_ERROR
    return result


def _start_run(
    config: RunConfig, plan: _Plan, jobs: int, echo: Callable[[str], None]
) -> tuple[dict[str, Any], list[str]]:
    """The run's folder made ready (or checked for --resume), its row, configuration, plan and waivers written;
    returns (the runs row, the backends that run here)."""
    from .backends.candidates import make as make_backend
    from .record.tables import read_table, write_table

    run_dir, run_id, requested = plan.run_dir, plan.run_id, plan.requested
    holds_run = (run_dir / "runs.parquet").exists() or (run_dir / "parts").exists()
    if holds_run and not config.resume:
        raise UsageError(f"{run_dir} already holds a run; pass --resume to finish it, or choose another --out")
    if config.resume:
        if not holds_run:
            raise UsageError(f"--resume: {run_dir} holds no run to resume")
        check_resumable(run_dir, config)
        run_id = read_table(run_dir, "runs")["run"][0]
    available, skipped = availability(
        requested, plan.reference, plan.oracle, lambda name: plan.unavailable.get(make_backend(name).name)
    )
    for name in config.require:
        if name in skipped:
            raise UsageError(f"--require {name}: it cannot run here: {skipped[name]}")
    run_row = runs_row(run_id, config, requested, available, skipped, plan.reference, plan.started)
    run_row["oracle"] = plan.oracle
    run_row["environment"] = {**plan.environment, "repositories": repositories(config.targets)}
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    # The cases this run (this shard) is to run: a merge names the ones a stopped shard never finished.
    (run_dir / "plan.json").write_text(
        json.dumps({"shard": config.shard, "cases": [ref.id for ref, _ in plan.found]}) + "\n"
    )
    _save_waivers(run_dir, config)
    write_table(run_dir, "runs", [run_row])
    echo(f"difftest: {len(plan.found)} case(s), backends {', '.join(requested)}, {jobs} worker(s) -> {run_dir}")
    for name, reason in skipped.items():
        echo(f"  skipped backend {name}: {reason}")
    return run_row, available


def _tasks_to_run(
    config: RunConfig,
    plan: _Plan,
    manifest: Any,
    run_id: str,
    available: list[str],
    threads: int,
    echo: Callable[[str], None],
) -> tuple[dict[str, Any], list[tuple[Any, str]]]:
    """(the digests of each suite file's code, the (task, log file) of every case not yet done): a case a resumed
    run finished is run again when its suite file or a module it imports changed since."""
    from .record.names import slug
    from .record.tables import part_keys
    from .suite.sources import source_digests

    logs = plan.run_dir / "logs"
    logs.mkdir(exist_ok=True)
    done = part_keys(plan.run_dir, "cases") & manifest.keys()
    sources = {path: source_digests(path) for path in dict.fromkeys(ref.path for ref, _ in plan.found)}
    changed = [
        ref
        for ref, _ in plan.found
        if slug(ref.id) in done and manifest.entries[slug(ref.id)].get("sources") != sources[ref.path]
    ]
    if changed:  # a result of other code is not this run's
        done -= {slug(ref.id) for ref in changed}
        echo(
            f"  {len(changed)} finished case(s) run again: their suite file or a module it imports changed since "
            f"they ran ({', '.join(ref.id for ref in changed[:5])}{' …' if len(changed) > 5 else ''})"
        )
    tasks = [
        (
            task_for(config, ref, run_id, plan.run_dir, available, plan.reference, plan.oracle, threads),
            str(logs / f"{slug(ref.id)}.log"),
        )
        for ref, _ in plan.found
        if slug(ref.id) not in done
    ]
    return sources, tasks


def _record_cases(
    pool: Any,
    tasks: list[tuple[Any, str]],
    manifest: Any,
    sources: dict[str, Any],
    interrupted: dict[str, str | None],
    echo: Callable[[str], None],
) -> int:
    """Run the tasks on the pool and write each case's rows as it finishes (a failure's row says what happened);
    returns how many finished."""
    from .record.names import slug
    from .worker.case_run import CaseRow
    from .worker.pool import Failure

    finished = 0
    for task, result in pool.run(tasks, stop=lambda: interrupted["signal"] is not None):
        finished += 1
        key = slug(task.ref.id)
        if isinstance(result, Failure):
            case, tensors = CaseRow.for_failure(task, result).as_row(), []
        else:
            case, tensors = result["case"], result["tensors"]
        case["log"] = f"logs/{key}.log"
        # the case row last: its presence marks the case done
        manifest.write(key, task.ref.id, case, tensors, sources=sources[task.ref.path])
        status = case["status"] if case["status"] != "ok" else f"{case.get('seconds', 0):.1f}s"
        echo(f"  [{finished}/{len(tasks)}] {task.ref.id}  {status}")
    return finished


def availability(
    requested: list[str], reference: str, oracle: str | None, reason_of: Callable[[str], str | None]
) -> tuple[list[str], dict[str, str]]:
    """(the backends that run here: reference, oracle, then candidates; {backend: why it cannot run})."""
    skipped = {}
    for name in requested + ([oracle] if oracle else []):
        reason = reason_of(name)
        if reason:
            skipped[name] = reason
    if reference in skipped:
        raise UsageError(f"the reference backend {reference!r} is not available: {skipped[reference]}")
    available = [b for b in requested + ([oracle] if oracle else []) if b not in skipped]
    available.sort(key=lambda b: (b != reference, b != oracle))
    return available, skipped


def task_for(
    config: RunConfig,
    ref: Any,
    run_id: str,
    run_dir: Path,
    available: list[str],
    reference: str,
    oracle: str | None,
    threads: int | None = None,
) -> Any:
    """What a worker (or ``difftest.check``, in the calling process) is given to run one case of this run."""
    from .worker.task import Task

    cache_root = config.cache_root()
    return Task(
        ref=ref,
        run_id=run_id,
        backends=available,
        reference=reference,
        exporter=config.exporter,
        artifacts_dir=str((run_dir / "onnx").resolve()),
        threads=threads,
        probes=list(config.probes),
        reruns=config.reruns,
        cache_dir=str(cache_root) if cache_root else None,
        localize_budget=config.localize_budget,
        control_budget=config.control_budget,
        max_tensor_bytes=config.max_tensor_bytes,
        onnx_inputs=config.onnx_inputs or None,
        reference_variants=[oracle] if oracle and oracle in available else [],
    )


class RunLock:
    """An exclusive lock on a run directory for the whole run: a second run into it is a usage error naming the
    process that holds it."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"

    def __enter__(self) -> "RunLock":
        import fcntl

        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise UsageError(
                f"{self.path.parent} is in use by another difftest run (pid {holder}); wait for it or "
                "choose another --out"
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        try:
            self.handle.seek(0)
            self.handle.truncate()
            fcntl.flock(self.handle, fcntl.LOCK_UN)
        finally:
            self.handle.close()


def finish(run_dir: Path, rejudge: bool = False, baseline: Path | None = None) -> RunResult:
    """Judge (if asked or never judged), then write the report, JUnit and summary of a stored run.

    With a baseline (given now, or remembered in ``baseline.txt`` from the run), failures are split into new
    and known, compare.md/html are written, and only new failures make the exit code 1.
    """
    from .judge.expectations import run_outcomes
    from .judge.verdicts import judge_run
    from .record.tables import read_table, row_dicts, write_table
    from .report import render
    from .report.summary import exit_code_for, write_junit, write_summary

    from .record.tables import drop_links_out

    for link, target in drop_links_out(run_dir):  # a crafted (or vandalised) folder: never write through a link
        print(
            f"difftest: removed the symbolic link {link} -> {target}: it leads out of the run folder, and difftest "
            "never writes through one",
            file=sys.stderr,
        )
    started = time.time()
    phases = {}
    if rejudge or not (run_dir / "comparisons.parquet").exists():
        write_table(run_dir, "comparisons", judge_run(run_dir))
        phases["judge"] = time.time() - started
    cases = row_dicts(read_table(run_dir, "cases"), "cases")
    comparisons = read_table(run_dir, "comparisons").to_dicts()
    if not cases or not comparisons:  # an empty table reports nothing, and "nothing failed" is not a result
        from .errors import RunDataError

        empty = "cases" if not cases else "comparisons"
        raise RunDataError(
            f"{run_dir / f'{empty}.parquet'}: holds no row, so there is nothing to report "
            f"({len(cases)} case(s), {len(comparisons)} verdict(s)); a damaged or crafted run folder, "
            "or a run stopped before any case finished (finish it with --resume)"
        )
    from .judge.classify import LABELS

    unknown = sorted({str(c["label"]) for c in comparisons} - set(LABELS))
    if unknown:
        from .errors import RunDataError

        raise RunDataError(
            f"{run_dir / 'comparisons.parquet'}: column 'label' holds {', '.join(map(repr, unknown))}, "
            "not a verdict label (a damaged or crafted table); rerun with `difftest report DIR --rejudge`"
        )
    results, waiver_report = run_outcomes(run_dir, cases, comparisons)
    new_keys = _baseline_changes(run_dir, baseline)
    runs = row_dicts(read_table(run_dir, "runs"), "runs")
    phases = {**(runs[0].get("phase_seconds") or {}), **phases}
    began = time.time()
    render(run_dir, phases=phases, new_failures=new_keys, judged=(cases, comparisons, results, waiver_report))
    phases["report"] = time.time() - began
    runs[0]["phase_seconds"] = phases
    write_table(run_dir, "runs", runs)
    write_junit(run_dir, cases, results)
    write_summary(run_dir, cases, results, waiver_report, new_keys)
    code = exit_code_for(results, waiver_report, new_keys)
    return RunResult(run_dir, results, code, time.time() - started, waiver_report, new_keys)


def _baseline_changes(run_dir: Path, baseline: Path | None) -> set[tuple[str, str]] | None:
    """(case, candidate) of the failures that are new against the baseline; None without a baseline."""
    from .nightly.changes import compare_runs, new_failures, write

    remembered = run_dir / "baseline.txt"
    if baseline is None and remembered.exists():
        baseline = Path(remembered.read_text().strip())
    if baseline is None:
        return None
    if not (baseline / "comparisons.parquet").exists():
        raise UsageError(f"--baseline {baseline}: not a finished difftest run (no comparisons.parquet)")
    remembered.write_text(f"{baseline.resolve()}\n")
    changes = compare_runs(baseline, run_dir)
    write(changes, baseline, run_dir, run_dir)
    return {(c.case, c.candidate) for c in new_failures(changes)}


def _save_waivers(run_dir: Path, config: RunConfig) -> None:
    from .judge import waivers

    path = Path(config.expectations) if config.expectations else waivers.DEFAULT_PATH  # validate() checked it exists
    waivers.save(run_dir, waivers.load(path) if path.exists() else [], str(path) if path.exists() else None)


def prepare_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write the run directory {path}: {exc.strerror or exc}; choose another --out"
        ) from None
    return path


def _link_latest(run_dir: Path, root: Path) -> None:
    """Point reports/latest at this run when it lives under the reports folder."""
    try:
        if run_dir.resolve().parent != root.resolve():
            return
        latest = root / "latest"
        temporary = root / f".latest.{os.getpid()}"
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        temporary.symlink_to(run_dir.name)
        os.replace(temporary, latest)
    except OSError:
        pass
