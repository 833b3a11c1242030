"""What a run is asked to do: ``RunConfig`` (every setting with its default, saved beside the results as
config.json), its checks before anything starts (``validate``, ``check_resumable``) and its paths made absolute."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .suite.probes import ALL_PROBES
from .worker.task import CONTROL_BUDGET, LOCALIZE_BUDGET, MAX_TENSOR_BYTES


def _default_backends() -> tuple[str, ...]:
    from .backends import DEFAULT_BACKENDS

    return DEFAULT_BACKENDS


DEFAULT_TIMEOUT = 600.0


@dataclass
class RunConfig:
    """Everything a run was asked to do; saved beside the results as config.json."""

    targets: list[str] = field(default_factory=lambda: ["suites"])
    backends: list[str] = field(default_factory=lambda: list(_default_backends()))
    out: str | None = None
    keyword: str | None = None
    jobs: int = 0  # 0: from the machine
    exporter: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    memory_limit_mb: int | None = None
    reports_root: str = "reports"
    resume: bool = False
    probes: list[str] = field(default_factory=lambda: list(ALL_PROBES))
    reruns: int = 1
    oracle: bool = True
    expectations: str | None = None  # waiver file; None: suites/expectations.toml when it exists
    baseline: str | None = None  # a previous run: failures are new or known, only new ones fail
    shard: str | None = None  # "K/N": run the K-th of N stable slices of the cases
    durations: str | None = None  # a previous run whose case durations balance the shards
    localize_budget: float = LOCALIZE_BUDGET  # seconds per case to localize failing candidates (0: off)
    control_budget: float = CONTROL_BUDGET  # seconds per case for automatic controls on failing candidates (0: off)
    isolate: str = "case"  # "case": each case in a child forked from a preloaded template; "spawn": a fresh one too
    require: list[str] = field(default_factory=list)  # candidates that must run here: skipping one is an error
    # Outputs larger than this are stored as an even sample (charts) and compared in full in the worker.
    max_tensor_bytes: int = field(
        default_factory=lambda: int(os.environ.get("DIFFTEST_MAX_TENSOR_BYTES", MAX_TENSOR_BYTES))
    )
    cache_dir: str | None = None  # None: the default location (see cache.default_root)
    use_cache: bool = True
    # Bare ONNX files' inputs: {"shapes": {input: [dims]}, "ranges": {input or "*": [lo, hi]}, "data": path}.
    onnx_inputs: dict = field(default_factory=dict)

    def cache_root(self) -> Path | None:
        """Where exports are cached for this run (None: not at all)."""
        if not self.use_cache:
            return None
        from .export.cache import default_root

        return Path(self.cache_dir) if self.cache_dir else default_root()


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def validate(config: RunConfig) -> None:
    """Usage errors for settings that cannot work, before anything starts."""
    if config.jobs < 0:
        raise UsageError("--jobs must be 0 (one per core) or a positive number")
    if not config.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {config.timeout:g}")
    if config.memory_limit_mb is not None and config.memory_limit_mb < 256:
        raise UsageError(
            f"--memory-limit {config.memory_limit_mb}: give at least 256 MiB per worker (torch alone "
            "needs about that much)"
        )
    if config.reruns < 0:
        raise UsageError("--reruns must be 0 or more")
    if config.exporter is not None and config.exporter not in ("dynamo", "torchscript"):
        raise UsageError(f"--exporter must be dynamo or torchscript, got {config.exporter!r}")
    from .backends.candidates import parse_list

    names = [c.name for c in parse_list(",".join(config.backends))]
    from .backends import ORACLE, REFERENCE

    if not [name for name in names if name not in (REFERENCE, ORACLE)]:
        raise UsageError(
            f"--backends {','.join(config.backends) or '(none)'}: no candidate to compare with the "
            f"reference {REFERENCE} (it always runs, and {ORACLE} is its float64 oracle), so nothing "
            f"would be judged; add one, e.g. --backends {REFERENCE},ort-cpu"
        )
    unknown = [name for name in config.require if name not in names]
    if unknown:
        raise UsageError(f"--require {','.join(unknown)}: not among --backends ({','.join(config.backends)})")
    if config.isolate not in ("case", "spawn"):
        raise UsageError(
            f"--isolate must be case or spawn, got {config.isolate!r} (every case runs in a clean "
            "process; there is no mode that shares one between cases)"
        )
    for name in ("localize_budget", "control_budget"):
        if getattr(config, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 (off) or a positive number of seconds")
    if config.expectations:
        from .judge import waivers

        path = Path(config.expectations)
        if not path.is_file():
            raise UsageError(f"--expectations {path}: no such file")
        waivers.load(path)  # a malformed waiver is a usage error now, not a crash at the end of the run


def absolute_paths(config: RunConfig) -> RunConfig:
    def absolute(value: str | None) -> str | None:
        return str(Path(value).absolute()) if value else value

    return dataclasses.replace(
        config,
        out=absolute(config.out),
        reports_root=absolute(config.reports_root),
        cache_dir=absolute(config.cache_dir),
        expectations=absolute(config.expectations),
        baseline=absolute(config.baseline),
        durations=absolute(config.durations),
        targets=[_absolute_target(t) for t in config.targets],
    )


def _absolute_target(target: str) -> str:
    path, sep, name = target.partition("::")
    return str(Path(path).absolute()) + sep + name


RESUME_SETTINGS = ("targets", "backends", "keyword", "exporter", "probes", "reruns", "oracle", "shard")


def check_resumable(run_dir: Path, config: RunConfig) -> None:
    """Refuse to resume a run that was asked to do something else, naming what differs."""
    path = run_dir / "config.json"
    if not path.exists():
        raise UsageError(
            f"--resume: {run_dir} holds no config.json, so difftest cannot tell what it was asked "
            "to run; start a new run in another --out"
        )
    stored = json.loads(path.read_text())
    differs = []
    for name in RESUME_SETTINGS:
        before, now = stored.get(name), getattr(config, name)
        if name == "targets":
            before = [_absolute_target(t) for t in before or []]
        if before != now:
            differs.append(f"{name}: {before!r} then, {now!r} now")
    if differs:
        raise UsageError(
            f"--resume: {run_dir} was run with other settings ({'; '.join(differs)}); resume with the "
            "same settings, or start a new run in another --out"
        )
