"""Worker processes that survive what the models do to them.

Each case runs in a worker process (spawned, so no torch state is forked).
Workers are reused while healthy. A worker that dies mid-case (segfault,
abort, out-of-memory kill) is replaced and the case becomes a ``crash``
result naming the signal and the stage it was in; a case that runs past the
timeout is killed and becomes ``timeout``. Other cases are unaffected.

Each worker leads its own process group, so killing it (on a timeout, or when
the run stops) also kills whatever the case started; a worker whose parent dies
kills its group and exits. Process-global state a case changes (default dtype,
working directory, alarms, TF32 flags, ...) is put back after the case and
recorded on it; what cannot be put back retires the worker (see
``process_state``). ``isolate="case"`` gives every case a fresh worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Iterable, Iterator


@dataclass
class Failure:
    """A case that produced no result: its worker crashed, timed out or hit a harness bug."""

    kind: str  # "crash" | "timeout" | "internal"
    stage: str | None
    message: str
    seconds: float


def _worker_main(conn: Connection, threads: int | None, memory_limit_mb: int | None,
                 parent: int | None = None) -> None:
    """Worker loop: receive (task, log path), run it with stdout/stderr in the log, send the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _guard_against_orphaning(parent)
    if memory_limit_mb:
        import resource

        limit = memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    from . import execute, task as task_module

    def report_stage(stage: str) -> None:
        conn.send(("stage", stage))

    task_module.stage_hook = report_stage
    from ..export.exporter import warm_up
    from . import process_state

    first = True
    while True:
        message = conn.recv()
        if message is None:
            return
        if message[0] == "discover":
            conn.send(_discover(*message[1:], progress=lambda count: conn.send(("found", count))))
            continue
        task, log_path = message
        if first:
            try:  # before the first case's snapshot: the exporters' one-time set-up is not the case's doing
                warm_up()
            except Exception:  # a warm-up problem shows up again, attributed, in the first case that exports
                pass
            if threads:
                import torch

                torch.set_num_threads(threads)
            first = False
        before = process_state.snapshot()
        with redirected_output(log_path, LOG_LIMIT_BYTES):
            try:
                result = ("ok", execute.run_task(task))
            except MemoryError:
                result = ("internal", "MemoryError: the case exceeded the worker's memory limit")
            except BaseException:  # a bug in difftest: report it, keep the worker honest
                result = ("internal", traceback.format_exc())
        restored = process_state.restore(before)
        if result[0] == "ok":
            notes = [f"the case changed process state: {c}; put back" for c in restored.changed]
            notes += [f"the case changed process state that cannot be put back: {c}; its worker was retired"
                      for c in restored.unrestorable]
            result[1]["case"]["isolation"] = notes
            result[1]["retire"] = bool(restored.unrestorable)
        conn.send(result)
        if restored.unrestorable:
            return  # the pool replaces a worker whose result says "retire"


def _guard_against_orphaning(parent: int | None) -> None:
    """Lead a process group, and take it down if the parent run dies (SIGKILL included)."""
    try:
        os.setpgrp()
    except OSError:
        pass
    if parent is None:
        return

    def end_group(*_: object) -> None:
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os._exit(1)

    signal.signal(signal.SIGTERM, end_group)
    try:  # Linux: the kernel signals us when the parent goes
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        import time as clock

        while True:
            if os.getppid() != parent:
                end_group()
            clock.sleep(0.5)

    import threading

    threading.Thread(target=watch, name="difftest-parent-watch", daemon=True).start()


def _discover(targets: list[str], keyword: str | None, backends: list[str],
              progress: Any = None) -> tuple[str, Any]:
    """Import the suites and check the backends here, where torch is loaded anyway, so the parent never
    imports it. Returns ("ok", {"cases": [(path, name)], "problems": [...], "unavailable": {...}}) or
    ("usage", message)."""
    from ..backends.candidates import make
    from ..errors import UsageError
    from ..judge.expectations import validate_expect
    from ..suite.discover import collect

    try:
        found = collect(targets, keyword, progress)
    except UsageError as exc:
        return "usage", str(exc)
    problems = []
    for ref, definition in found:
        expect = definition.options.get("expect")
        problem = validate_expect(expect) if expect else None
        if problem:
            problems.append(f"{ref.path}: case {ref.name!r}: {problem}")
    unavailable: dict[str, str | None] = {}
    for name in backends:
        backend = make(name)
        if backend.name not in unavailable:
            unavailable[backend.name] = backend.unavailable_reason()
    return "ok", {"cases": [(ref.path, ref.name) for ref, _ in found], "problems": problems,
                  "unavailable": unavailable, "environment": environment_facts()}


def environment_facts() -> dict[str, Any]:
    """What the runtimes are, read where they are imported: the onnxruntime actually imported (and whether both
    ORT distributions are installed), its providers in priority order, and the CUDA and cuDNN torch and ORT were
    built with."""
    from importlib import metadata

    facts: dict[str, Any] = {}
    try:
        import onnxruntime

        facts["onnxruntime"] = f"{onnxruntime.__version__} ({os.path.dirname(onnxruntime.__file__)})"
        facts["ort_providers"] = list(onnxruntime.get_available_providers())
        build = getattr(onnxruntime, "get_build_info", None)
        facts["ort_build"] = build() if build else None
    except Exception as exc:
        facts["onnxruntime"] = f"not importable: {exc}"
    installed = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            installed.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    facts["ort_distributions"] = installed
    try:
        import torch

        facts["torch_cuda"] = torch.version.cuda
        facts["torch_cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:
        pass
    facts["variables"] = {k: v for k, v in sorted(os.environ.items())
                          if k.startswith(("CUDA_", "ORT_", "OMP_", "MKL_", "TORCH_", "DIFFTEST_", "NVIDIA_"))
                          and "TOKEN" not in k and "KEY" not in k}
    return facts


LOG_LIMIT_BYTES = 8 * 2**20


class redirected_output:
    """Point file descriptors 1 and 2 at a log file, so native libraries' output is kept too. A log past
    ``limit`` bytes is cut to its first and last parts when the case ends, and says so."""

    def __init__(self, path: str | None, limit: int | None = None):
        self.path = path
        self.limit = limit

    def __enter__(self) -> None:
        if not self.path:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def __exit__(self, *exc: Any) -> None:
        if not self.path:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        os.close(self.saved[0])
        os.close(self.saved[1])
        if self.limit:
            cap_log(self.path, self.limit)


def cap_log(path: str, limit: int) -> None:
    """Keep the first and last half of ``limit`` bytes of a log that grew past it, with a note between."""
    try:
        size = os.path.getsize(path)
        if size <= limit:
            return
        half = limit // 2
        with open(path, "rb") as handle:
            head = handle.read(half)
            handle.seek(size - half)
            tail = handle.read()
        note = (f"\n… [difftest cut {size - 2 * half} bytes from the middle of this log: it grew to {size} bytes, "
                f"past the {limit // 2**20} MiB bound per case] …\n").encode()
        with open(path, "wb") as handle:
            handle.write(head + note + tail)
    except OSError:
        pass


@dataclass
class _Slot:
    process: Any
    conn: Connection
    task: Any = None
    started: float = 0.0
    stage: str | None = None
    used: bool = False
    retire: bool = False  # the worker said its process state cannot be put back: replace it after this case


class WorkerPool:
    """Run tasks on ``jobs`` worker processes; yields (task, result dict | Failure) as they finish."""

    def __init__(self, jobs: int, timeout: float, threads: int | None = None, memory_limit_mb: int | None = None,
                 isolate: str = "worker"):
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.threads = threads
        self.memory_limit_mb = memory_limit_mb
        self.isolate = isolate  # "worker": reuse healthy workers; "case": a fresh worker per case
        self.context = multiprocessing.get_context("spawn")
        self.slots: list[_Slot] = []

    def _start(self) -> _Slot:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main, args=(child, self.threads, self.memory_limit_mb, os.getpid()), daemon=True
        )
        process.start()
        child.close()
        return _Slot(process, parent)

    def start(self, count: int) -> None:
        """Start up to ``count`` workers now, so their imports overlap whatever the parent does next."""
        while len(self.slots) < min(count, self.jobs):
            self.slots.append(self._start())

    def discover(self, targets: list[str], keyword: str | None, backends: list[str]) -> dict[str, Any]:
        """Ask a worker to find the cases and check the backends (see ``_discover``)."""
        from ..errors import UsageError

        self.start(1)
        slot = self.slots[0]
        slot.used = True
        slot.conn.send(("discover", targets, keyword, backends))
        while True:
            ready = wait([slot.conn, slot.process.sentinel], timeout=self.timeout)
            if not ready:
                self._replace(slot)
                raise UsageError(f"importing the suites took more than {self.timeout:g} s")
            try:
                kind, payload = slot.conn.recv()
            except (EOFError, OSError):
                slot.process.join(5)
                death = _death(slot.process.exitcode, "suite import")
                self._replace(slot)
                raise UsageError(f"importing the suites killed the worker process ({death})") from None
            if kind == "stage":
                continue
            if kind == "found":  # there is work for more workers: start them while discovery goes on
                self.start(payload)
                continue
            if kind == "usage":
                raise UsageError(payload)
            return payload

    def run(self, tasks: Iterable[tuple[Any, str | None]], stop: Any = None) -> Iterator[tuple[Any, dict | Failure]]:
        """Yield (task, result) as cases finish; ``stop()`` true ends the run between results (the workers, and
        what their cases started, are killed)."""
        pending = list(tasks)
        pending.reverse()
        try:
            while pending or any(s.task is not None for s in self.slots):
                if stop is not None and stop():
                    return
                while pending and len([s for s in self.slots if s.task is not None]) < self.jobs:
                    slot = next((s for s in self.slots if s.task is None), None)
                    if slot is None:
                        slot = self._start()
                        self.slots.append(slot)
                    task, log_path = pending.pop()
                    slot.task, slot.started, slot.stage, slot.used = task, time.monotonic(), None, True
                    slot.conn.send((task, log_path))
                yield from self._collect()
        finally:
            self.close()

    def _collect(self) -> Iterator[tuple[Any, dict | Failure]]:
        busy = [s for s in self.slots if s.task is not None]
        now = time.monotonic()
        # At most a second at a time, so a stop request (SIGTERM) is noticed promptly.
        wait_for = min(1.0, max(0.0, min(s.started + self.timeout - now for s in busy))) if busy else 0.0
        ready = set(wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=wait_for + 0.05))
        for slot in busy:
            elapsed = time.monotonic() - slot.started
            if slot.conn in ready or slot.process.sentinel in ready:
                outcome = self._receive(slot)
                if outcome is None:
                    continue
                yield slot.task, outcome
                slot.task = None
                if isinstance(outcome, Failure) and outcome.kind == "crash" or slot.retire or self.isolate == "case":
                    self._replace(slot)
            elif elapsed > self.timeout:
                task, stage = slot.task, slot.stage
                self._replace(slot)
                yield task, Failure(
                    "timeout", stage, f"no result after {self.timeout:g} s (stage: {stage or 'unknown'}); "
                    "the worker was killed. Raise --timeout if the case is just slow.", elapsed
                )

    def _receive(self, slot: _Slot) -> dict | Failure | None:
        elapsed = time.monotonic() - slot.started
        try:
            while slot.conn.poll():
                kind, payload = slot.conn.recv()
                if kind == "stage":
                    slot.stage = payload
                    continue
                if kind == "ok":
                    slot.retire = bool(payload.pop("retire", False))
                    return payload
                return Failure("internal", slot.stage, payload, elapsed)
        except (EOFError, OSError):
            pass
        if slot.process.is_alive():
            return None  # only stage messages so far
        slot.process.join(1)
        return Failure("crash", slot.stage, _death(slot.process.exitcode, slot.stage), elapsed)

    def _kill(self, slot: _Slot) -> None:
        """Kill the worker and everything in its process group (processes the case started)."""
        try:
            os.killpg(slot.process.pid, signal.SIGKILL)
        except (OSError, TypeError):
            pass
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(5)

    def _replace(self, slot: _Slot) -> None:
        self._kill(slot)
        slot.conn.close()
        fresh = self._start()
        slot.process, slot.conn, slot.task, slot.stage, slot.retire = fresh.process, fresh.conn, None, None, False

    def close(self) -> None:
        for slot in self.slots:
            try:
                if slot.task is None and slot.used and slot.process.is_alive():
                    slot.conn.send(None)
            except OSError:
                pass
        for slot in self.slots:
            if slot.used:
                slot.process.join(2)
            self._kill(slot)  # a worker that never got a case (still warming up) is simply stopped
            slot.conn.close()
        self.slots = []


def _death(exitcode: int | None, stage: str | None) -> str:
    where = f" during {stage}" if stage else ""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: often the kernel's out-of-memory killer)" if name == "SIGKILL" else ""
        return f"worker process died from {name}{where}{hint}"
    return f"worker process exited with status {exitcode}{where} without reporting a result"
