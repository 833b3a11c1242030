"""Worker processes that survive what the models do to them, and cases that cannot reach each other.

Every case starts in a clean process. Each worker slot keeps a *template* process (spawned, so no state of the
run's parent is inherited) that imports torch, onnx, onnxruntime and difftest's worker modules and builds the
exporter's operator registry once, but runs no model, starts no thread pool and never initialises CUDA. For each
case the template forks a child; the child runs the case, writes its result and exits. Nothing a case does
(autocast left on, a default dtype, a patched module attribute or a patched difftest encoder, TF32 or
``fp32_precision`` flags, threads, alarms) outlives its child, so there is no list of settings to put back; what
a case changed is still said on it (``isolation``, see ``process_state``). The suites are imported for discovery
in a forked child too: the template never runs user code.

A child that dies (segfault, abort, out-of-memory kill) becomes a ``crash`` naming the signal and the stage it
was in; one that runs past the timeout is killed and becomes ``timeout``; the template survives both.

Results are tagged with their task: sequence number, case id and the pid of the case's own process. A process
the case forked that carries on and sends a result too is refused (said on the case); a case whose only result
came from such a process is recorded as lost (a failing ``crash`` that says so), never silently replaced.

Orphans: the template is a child subreaper (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``), so whatever a case starts
and leaves behind, including processes that start their own session (``setsid``, ``start_new_session=True``), is
reparented to it instead of init. When the case's process ends the template walks /proc for its remaining
descendants and kills them (saying how many on the case). Each case leads its own process group (a timeout kills
the group at once); a template whose parent run dies (SIGKILL included: the kernel's parent-death signal) kills
every descendant and exits.

``isolate="spawn"`` also replaces the template after every case (a fresh interpreter per case, as the old
``--isolate case`` did). Fork safety: the template checks it holds a single thread before forking; a child forked
from a process whose OpenMP pool may have started (``run_isolated`` from a caller's process) runs on one
intra-op thread, since GNU OpenMP's pool does not survive a fork.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


@dataclass
class Failure:
    """A case that produced no result: its process crashed, timed out, lost its result or hit a harness bug."""

    kind: str  # one of judge.vocabulary.FAILURE_KINDS: "crash" | "timeout" | "internal"
    stage: str | None
    message: str
    seconds: float


# --- the process tree ---------------------------------------------------------------------------------------


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants of this process are reparented to it (Linux), so they can be found and killed."""
    return sys.platform.startswith("linux") and _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process /proc shows."""
    found = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()  # the command name, in parentheses, may hold spaces
        if len(fields) >= 2:
            found[int(name)] = (int(fields[1]), fields[0])
    return found


def descendants(root: int | None = None) -> list[int]:
    """Living descendants of ``root`` (default: this process), found through /proc."""
    root = os.getpid() if root is None else root
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, queue = [], list(children.get(root, []))
    while queue:
        pid = queue.pop()
        if table.get(pid, (0, "Z"))[1] not in ("Z", "X"):
            found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants() -> int:
    """Kill every descendant of this process (what a case left running), reap them; returns how many there were."""
    killed: set[int] = set()
    for _ in range(50):
        _reap()
        alive = descendants()
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.01)
    _reap()
    return len(killed)


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


# --- the template and the case process ------------------------------------------------------------------------


def _worker_main(
    conn: Connection,
    threads: int | None,
    memory_limit_mb: int | None,
    parent: int | None = None,
    result_dir: str | None = None,
    libraries: tuple[str, ...] = (),
) -> None:
    """Template loop: receive a task, fork a child that runs it, report its end; nothing user-written runs here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _guard_against_orphaning(parent)
    become_subreaper()
    if memory_limit_mb:
        import resource

        limit = memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if NVML_CHECK not in os.environ:  # torch.cuda.is_available() here must not initialise CUDA (a fork poisons it)
        os.environ[NVML_CHECK] = "1"
        os.environ[NVML_CHECK + "_SET_BY_DIFFTEST"] = "1"
    from . import execute, process_state, task as task_module  # noqa: F401  (loaded once, shared by every case)

    base_threads = _thread_count()  # native pools started at import (OpenBLAS, ORT): not OpenMP's
    result_dir = result_dir or tempfile.mkdtemp(prefix="difftest-results-")
    preloaded = False

    def preload() -> None:  # while the first child runs (discovery, or a case): it overlaps, it does not wait
        nonlocal preloaded, base_threads
        if not preloaded:
            with redirected_output(os.devnull):  # the exporter's registry notes (a missing torchvision) are no case's
                _preload(libraries)
            preloaded = True
            base_threads = max(base_threads, _thread_count())

    if not conn.poll():  # nothing to do yet: load everything now, so the first case starts from a full template
        preload()
    while True:
        message = conn.recv()
        if message is None:
            kill_descendants()
            return
        kind, seq = message[0], message[1]
        if kind == "preload":
            with redirected_output(os.devnull):
                preload_libraries(message[2])
            base_threads = max(base_threads, _thread_count())
            continue
        if kind == "warm":  # a case of this template exported: later ones should not pay the exporters' set-up
            preload()
            with redirected_output(os.devnull):
                _warm_exporters()
            continue
        single = _thread_count() > base_threads  # threads started since: the child must not trust OpenMP's pool
        if kind == "discover":
            targets, keyword, backends = message[2:]

            def body(conn: Connection = conn, seq: int = seq, request: tuple = (targets, keyword, backends)) -> Any:
                return _discover(*request, progress=lambda count: conn.send(("found", seq, os.getpid(), count)))

            serve(conn, seq, "discover", body, None, threads, result_dir, single, notes=False, meanwhile=preload)
        else:
            task, log_path = message[2], message[3]
            serve(
                conn,
                seq,
                task.ref.id,
                lambda task=task: execute.run_task(task),
                log_path,
                threads,
                result_dir,
                single,
                meanwhile=preload,
            )


_PRELOADED_PACKAGES = ("worker", "backends", "export", "suite", "judge", "record", "localize")


def _preload(libraries: Iterable[str] = (), warm: bool = False) -> None:
    """What every case would otherwise import or build itself: the runtimes, difftest's worker-side modules, the
    exporters' one-time set-up, the exporter's operator registry, and the installed libraries the suites import
    (``libraries``, from discovery: never the suite files themselves). None of it runs a model or an OpenMP
    region, or touches CUDA."""
    import importlib
    import pkgutil

    from ..export import cache
    from ..export.exporter import reuse_torchlib_registry, warm_up

    try:
        warm_up()
        cache.warm_up()
        import torch._dynamo  # noqa: F401  (torch.export, and eager code under a dispatch mode, import it: 1 s)
        import torch.export  # noqa: F401
        import torch.onnx  # noqa: F401

        if reuse_torchlib_registry():
            from torch.onnx._internal.exporter import _registration

            _registration.ONNXRegistry.from_torchlib()  # built once here, copied per export in each case
    except Exception:  # a set-up problem shows up again, attributed, in the first case that exports
        pass
    for package in _PRELOADED_PACKAGES:
        module = importlib.import_module(f"{__package__.rpartition('.')[0]}.{package}")
        for info in pkgutil.walk_packages(module.__path__, f"{module.__name__}."):
            try:
                importlib.import_module(info.name)
            except Exception:
                continue
    if warm:
        _warm_exporters()
    preload_libraries(libraries)


def _warm_exporters() -> None:
    """Export a two-element ``x + 1`` with each exporter, so the first export of every case does not import and
    build the exporters' machinery again (about 4 s per dynamo export here). Tracing runs on fake tensors and the
    eager op is far below OpenMP's grain size, so no thread pool starts; dynamo and the dispatcher's caches are
    reset after it (see ``exporter.reset_dynamo``), and tqdm's monitor thread, which the exporter starts, is
    stopped so that the process forks with the threads it had."""
    try:
        import torch

        from ..export.exporter import export
        from ..suite.model_io import FlatModule, signature_of

        class PlusOne(torch.nn.Module):
            def forward(self, x: Any) -> Any:
                return x + 1

        model = PlusOne().eval()
        signature, example = signature_of(model, (torch.ones(2),), {})
        for exporter in ("dynamo", "torchscript"):
            export(FlatModule(model, signature).for_export(), tuple(example), ["output"], exporter=exporter)
    except Exception:
        pass
    tqdm = sys.modules.get("tqdm.std")
    monitor = getattr(getattr(tqdm, "tqdm", None), "monitor", None)
    if monitor is not None:
        try:
            monitor.exit()
            tqdm.tqdm.monitor = None
        except Exception:
            pass


def preload_libraries(names: Iterable[str]) -> None:
    for name in names:
        try:
            __import__(name)
        except BaseException:  # a library that cannot be imported here fails, attributed, in the case that needs it
            continue


def _installed_libraries(before: set[str]) -> list[str]:
    """Top-level names of the installed (site-packages or standard library) modules imported since ``before``."""
    import sysconfig

    roots = {
        os.path.realpath(p)
        for p in {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
        if p
    }
    found = []
    for name in sorted(set(sys.modules) - before):
        top = name.partition(".")[0]
        if top in found or top == __package__.partition(".")[0]:
            continue
        module = sys.modules.get(top)
        where = getattr(module, "__file__", None)
        if where and any(os.path.realpath(where).startswith(root + os.sep) for root in roots):
            found.append(top)
    return found


def serve(
    conn: Connection,
    seq: int,
    label: str,
    body: Callable[[], Any],
    log_path: str | None,
    threads: int | None,
    result_dir: str,
    single_thread: bool,
    notes: bool = True,
    prepare: Callable[[], list[str]] | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> None:
    """Fork a child that runs ``body`` and sends its result; wait for it, kill what it left, report its end.

    Messages (all tagged with ``seq``): ("started", seq, pid), then the child's ("stage", seq, pid, name) and
    ("result", seq, label, pid), then ("ended", seq, pid, wait status, processes killed)."""
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_write)
        _case_child(conn, seq, label, body, log_path, threads, result_dir, single_thread, notes, go_read, prepare)
    os.close(go_read)
    conn.send(("started", seq, pid))
    os.write(go_write, b"g")  # the child starts only once its pid is known to the parent
    os.close(go_write)
    if meanwhile is not None:
        try:
            meanwhile()
        except Exception:
            pass
    status = 0
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            break
        except InterruptedError:
            continue
    killed = kill_descendants()
    conn.send(("ended", seq, pid, status, killed))


def _case_child(
    conn: Connection,
    seq: int,
    label: str,
    body: Callable[[], Any],
    log_path: str | None,
    threads: int | None,
    result_dir: str,
    single_thread: bool,
    notes: bool,
    go: int,
    prepare: Callable[[], list[str]] | None = None,
) -> None:
    """The case's own process: run ``body``, send the tagged result, exit (never returns). ``prepare`` runs first
    (before the process state is read) and returns notes for the case."""
    try:
        try:
            os.setpgid(0, 0)  # its own process group: a timeout kills it with what it started
        except OSError:
            pass
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))  # the template's death is the case's
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if os.environ.pop(NVML_CHECK + "_SET_BY_DIFFTEST", None):  # the case sees the environment it was given
            os.environ.pop(NVML_CHECK, None)
        os.read(go, 1)
        os.close(go)
        from . import process_state, task as task_module

        task_module.stage_hook = lambda stage: conn.send(("stage", seq, os.getpid(), stage))
        import torch

        prepared = prepare() if prepare is not None else []
        # After ``prepare``: putting the caller's first state back would otherwise restore its thread count too,
        # and a forked child that enters OpenMP's pool of a parent that used it waits for threads that are gone.
        if single_thread:
            torch.set_num_threads(1)
        elif threads:
            torch.set_num_threads(threads)
        before = process_state.snapshot() if notes else None
        with redirected_output(log_path, LOG_LIMIT_BYTES):
            import faulthandler

            if log_path and faulthandler.is_enabled():  # a crash's traceback goes to the case's log, like its output
                faulthandler.enable(file=sys.stderr)
            try:
                result: tuple[str, Any] = ("ok", body())
            except MemoryError:
                result = ("internal", "MemoryError: the case exceeded the worker's memory limit")
            except BaseException:  # a bug in difftest: report it
                result = ("internal", traceback.format_exc())
            if before is not None and result[0] == "ok" and isinstance(result[1], dict) and "case" in result[1]:
                changed = process_state.changes(before)
                said = [
                    f"the case changed process state: {c} (its process ended with it)"
                    for c in changed.changed + changed.unrestorable
                ]
                result[1]["case"]["isolation"] = prepared + list(result[1]["case"].get("isolation") or []) + said
        _send_result(conn, seq, label, result, result_dir)
    except BaseException:
        try:
            conn.send(("internal", seq, os.getpid(), traceback.format_exc()))
        except BaseException:
            pass
    finally:
        os._exit(0)


def _result_path(result_dir: str, seq: int, pid: int) -> str:
    return os.path.join(result_dir, f"{seq}-{pid}.pickle")


def _send_result(conn: Connection, seq: int, label: str, result: Any, result_dir: str) -> None:
    """Write the result where only this process's name points (a process the case forked writes its own file, so
    two results never interleave), then say so on the pipe."""
    pid = os.getpid()
    path = _result_path(result_dir, seq, pid)
    try:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        data = pickle.dumps(("internal", "the case's result could not be pickled:\n" + traceback.format_exc()))
    with open(path + ".tmp", "wb") as handle:
        handle.write(data)
    os.replace(path + ".tmp", path)
    conn.send(("result", seq, label, pid))


class _PlainData(pickle.Unpickler):
    """Results hold plain data (dicts, lists, strings, bytes, numbers); anything else a case's process could
    have written to run code in the parent is refused."""

    ALLOWED = {
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a result may hold plain data only, not {module}.{name}")


def _load_result(result_dir: str, seq: int, pid: int) -> tuple[str, Any]:
    path = _result_path(result_dir, seq, pid)
    try:
        with open(path, "rb") as handle:
            return _PlainData(handle).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        return "lost", f"its result could not be read ({type(exc).__name__}: {exc})"
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


TEMPLATE_ALLOWANCE = 300.0  # seconds a template may take to load before its first case starts


class _Tracker:
    """One task's messages, as the parent sees them: what is the task's, what is refused, and how it ended."""

    def __init__(self, seq: int, label: str, result_dir: str):
        self.seq, self.label, self.result_dir = seq, label, result_dir
        self.child: int | None = None
        self.stage: str | None = None
        self.result: tuple[str, Any] | None = None
        self.refused: list[str] = []
        self.sent = self.started = time.monotonic()
        self.found: list[int] = []  # discovery's progress counts

    def deadline(self, timeout: float) -> float:
        """When the task times out: ``timeout`` after its process started, or, while the template is still
        loading (its imports, under a busy machine), ``TEMPLATE_ALLOWANCE`` more."""
        if self.child is None:
            return self.sent + timeout + TEMPLATE_ALLOWANCE
        return self.started + timeout

    def feed(self, message: tuple) -> dict | Failure | tuple | None:
        """Take one message; returns the outcome when the task has ended."""
        kind, seq = message[0], message[1]
        if seq != self.seq:
            return None  # from an earlier task (one that timed out): not this one's
        if kind == "started":
            self.child = message[2]
            self.started = time.monotonic()  # the case's clock starts with its process, not the template's imports
        elif kind == "stage":
            if message[2] == self.child:
                self.stage = message[3]
        elif kind == "found":
            if message[2] == self.child:
                self.found.append(message[3])
        elif kind == "result":
            label, pid = message[2], message[3]
            if pid == self.child and label == self.label and self.result is None:
                self.result = _load_result(self.result_dir, seq, pid)
            else:
                _load_result(self.result_dir, seq, pid)  # removed unread
                self.refused.append(
                    f"a result for {label!r} from process {pid}, which is not the case's process "
                    f"{self.child} (a process the case forked?), was refused"
                )
        elif kind == "internal":
            if message[2] == self.child and self.result is None:
                self.result = ("internal", message[3])
        elif kind == "ended":
            return self._outcome(message[3], message[4])
        return None

    def _outcome(self, status: int, killed: int) -> dict | Failure | tuple:
        elapsed = time.monotonic() - self.started
        notes = list(self.refused)
        if killed:
            notes.append(f"{killed} process(es) the case left running were killed when its process ended")
        if self.result is None:
            if self.refused:
                return Failure("crash", self.stage, "lost: the case's results are lost: " + "; ".join(notes), elapsed)
            death = _death(_exit_code(status), self.stage)
            return Failure("crash", self.stage, death + (f"; {notes[-1]}" if killed else ""), elapsed)
        kind, payload = self.result
        if kind == "lost":
            return Failure("crash", self.stage, f"lost: the case's results are lost: {payload}", elapsed)
        if kind == "internal":
            return Failure("internal", self.stage, payload, elapsed)
        if isinstance(payload, dict) and "case" in payload:
            payload["case"]["isolation"] = list(payload["case"].get("isolation") or []) + notes
        return payload


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else status


_caller_preloaded = False


def run_isolated(
    label: str,
    body: Callable[[], Any],
    log_path: str | None = None,
    threads: int | None = None,
    prepare: Callable[[], list[str]] | None = None,
) -> Any:
    """Run ``body`` (which returns picklable plain data) in a child forked from this process, the way a run's
    cases run: a supervisor child (subreaper) forks the case's process, and kills what it leaves. Returns the
    body's result, or a :class:`Failure`. Fork carries whatever ``body`` holds (a live model). A child of a
    process that may have started OpenMP's pool runs on one intra-op thread."""
    import multiprocessing.connection as mpc

    global _caller_preloaded
    if not _caller_preloaded:  # once per process: what each child would otherwise build again (no model runs)
        with redirected_output(os.devnull):
            _preload(warm=True)
        _caller_preloaded = True
    result_dir = tempfile.mkdtemp(prefix="difftest-results-")
    ours, theirs = mpc.Pipe()
    single = _thread_count() > 1 or bool(threads and threads > 1 and _omp_may_be_running())
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the supervisor: runs nothing of the caller's
        try:
            ours.close()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
            become_subreaper()
            serve(theirs, 1, label, body, log_path, threads, result_dir, single, prepare=prepare)
        finally:
            os._exit(0)
    theirs.close()
    tracker = _Tracker(1, label, result_dir)
    try:
        while True:
            try:
                message = ours.recv()
            except (EOFError, OSError):
                return Failure(
                    "crash",
                    tracker.stage,
                    "the case's supervising process died without reporting its end",
                    time.monotonic() - tracker.started,
                )
            outcome = tracker.feed(message)
            if outcome is not None:
                return outcome
    except BaseException:  # Ctrl-C in the caller: the case goes with it
        for target in (tracker.child, pid):
            if target:
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
        raise
    finally:
        ours.close()
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        shutil.rmtree(result_dir, ignore_errors=True)


def _omp_may_be_running() -> bool:
    return _thread_count() > 1


def _guard_against_orphaning(parent: int | None) -> None:
    """Lead a process group, and take it down, with every descendant, if the parent run dies (SIGKILL included)."""
    try:
        os.setpgrp()
    except OSError:
        pass
    if parent is None:
        return

    def end_group(*_: object) -> None:
        try:
            kill_descendants()
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os._exit(1)

    signal.signal(signal.SIGTERM, end_group)
    # Linux: the kernel signals us when the parent goes; elsewhere a thread watches (the template then holds two
    # threads, so its children run on one intra-op thread).
    if _prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM)):
        if os.getppid() != parent:  # it went before the signal was armed
            end_group()
        return

    def watch() -> None:
        import time as clock

        while True:
            if os.getppid() != parent:
                end_group()
            clock.sleep(0.5)

    import threading

    threading.Thread(target=watch, name="difftest-parent-watch", daemon=True).start()


def _discover(targets: list[str], keyword: str | None, backends: list[str], progress: Any = None) -> tuple[str, Any]:
    """Import the suites and check the backends here, where torch is loaded anyway, so the parent never
    imports it. Returns ("ok", {"cases": [(path, name)], "problems": [...], "unavailable": {...}}) or
    ("usage", message)."""
    from ..backends.candidates import make
    from ..errors import UsageError
    from ..judge.expectations import validate_expect
    from ..suite.discover import collect

    before = set(sys.modules)
    try:
        found = collect(targets, keyword, progress)
    except UsageError as exc:
        return "usage", str(exc)
    libraries = _installed_libraries(before)
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
    return "ok", {
        "cases": [(ref.path, ref.name) for ref, _ in found],
        "problems": problems,
        "unavailable": unavailable,
        "environment": environment_facts(),
        "libraries": libraries,
    }


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
    facts["variables"] = {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith(("CUDA_", "ORT_", "OMP_", "MKL_", "TORCH_", "DIFFTEST_", "NVIDIA_"))
        and "TOKEN" not in k
        and "KEY" not in k
    }
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
        note = (
            f"\n… [difftest cut {size - 2 * half} bytes from the middle of this log: it grew to {size} bytes, "
            f"past the {limit // 2**20} MiB bound per case] …\n"
        ).encode()
        with open(path, "wb") as handle:
            handle.write(head + note + tail)
    except OSError:
        pass


@dataclass
class _Slot:
    process: Any
    conn: Connection
    task: Any = None
    tracker: _Tracker | None = None
    used: bool = False
    warmed: bool = False  # asked to warm its exporters (after a case of it exported)


class WorkerPool:
    """Run tasks on ``jobs`` worker slots, each case in a fresh child of the slot's template; yields (task,
    result dict | Failure) as they finish."""

    def __init__(
        self,
        jobs: int,
        timeout: float,
        threads: int | None = None,
        memory_limit_mb: int | None = None,
        isolate: str = "case",
    ):
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.threads = threads
        self.memory_limit_mb = memory_limit_mb
        self.isolate = isolate  # "case": a forked child of a preloaded template; "spawn": a fresh template too
        self.context = multiprocessing.get_context("spawn")
        self.slots: list[_Slot] = []
        self.result_dir = tempfile.mkdtemp(prefix="difftest-results-")
        self.seq = 0
        self.libraries: tuple[str, ...] = ()  # installed libraries the suites import: every template preloads them

    def _start(self) -> _Slot:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main,
            args=(child, self.threads, self.memory_limit_mb, os.getpid(), self.result_dir, self.libraries),
            daemon=True,
        )
        process.start()
        child.close()
        return _Slot(process, parent)

    def start(self, count: int) -> None:
        """Start up to ``count`` templates now, so their imports overlap whatever the parent does next."""
        while len(self.slots) < min(count, self.jobs):
            self.slots.append(self._start())

    def _send(self, slot: _Slot, kind: str, label: str, *payload: Any) -> None:
        self.seq += 1
        slot.tracker = _Tracker(self.seq, label, self.result_dir)
        slot.used = True
        slot.conn.send((kind, self.seq, *payload))

    def discover(self, targets: list[str], keyword: str | None, backends: list[str]) -> dict[str, Any]:
        """Find the cases and check the backends in a child of a template (see ``_discover``)."""
        from ..errors import UsageError

        self.start(1)
        slot = self.slots[0]
        self._send(slot, "discover", "discover", targets, keyword, backends)
        tracker = slot.tracker
        while True:
            ready = wait(
                [slot.conn, slot.process.sentinel], timeout=max(0.0, tracker.deadline(self.timeout) - time.monotonic())
            )
            if not ready or time.monotonic() > tracker.deadline(self.timeout):
                self._replace(slot)
                raise UsageError(f"importing the suites took more than {self.timeout:g} s")
            try:
                message = slot.conn.recv()
            except (EOFError, OSError):
                self._replace(slot)
                raise UsageError("importing the suites killed the worker process (its template died)") from None
            outcome = tracker.feed(message)
            while tracker.found:  # there is work for more workers: start them while discovery goes on
                self.start(tracker.found.pop(0))
            if outcome is None:
                continue
            slot.tracker = None
            if isinstance(outcome, Failure) and outcome.kind == "internal":
                raise RuntimeError(f"finding the cases failed in the worker:\n{outcome.message}")
            if isinstance(outcome, Failure):
                raise UsageError(f"importing the suites killed the worker process ({outcome.message})")
            kind, payload = outcome
            if kind == "usage":
                raise UsageError(payload)
            self.libraries = tuple(payload.get("libraries") or ())
            for other in self.slots:  # the templates started so far import them now, before their first case
                if self.libraries and other.process.is_alive():
                    other.conn.send(("preload", 0, self.libraries))
            return payload

    def run(self, tasks: Iterable[tuple[Any, str | None]], stop: Any = None) -> Iterator[tuple[Any, dict | Failure]]:
        """Yield (task, result) as cases finish; ``stop()`` true ends the run between results (the templates, and
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
                    slot.task = task
                    self._send(slot, "case", task.ref.id, task, log_path)
                yield from self._collect()
        finally:
            self.close()

    def _collect(self) -> Iterator[tuple[Any, dict | Failure]]:
        busy = [s for s in self.slots if s.task is not None]
        now = time.monotonic()
        # At most a second at a time, so a stop request (SIGTERM) is noticed promptly.
        wait_for = min(1.0, max(0.0, min(s.tracker.deadline(self.timeout) - now for s in busy))) if busy else 0.0
        ready = set(wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=wait_for + 0.05))
        for slot in busy:
            tracker = slot.tracker
            elapsed = time.monotonic() - tracker.started
            if slot.conn in ready or slot.process.sentinel in ready:
                outcome = self._receive(slot)
                if outcome is None:
                    continue
                task = slot.task
                slot.task, slot.tracker = None, None
                yield task, outcome
                if self.isolate == "spawn" or not slot.process.is_alive():
                    self._replace(slot)
                elif not slot.warmed and isinstance(outcome, dict) and outcome["case"].get("export_cached") is False:
                    slot.warmed = True  # the export cache did not serve this one: later cases will export too
                    slot.conn.send(("warm", 0))
            elif time.monotonic() > tracker.deadline(self.timeout):
                task, stage = slot.task, tracker.stage
                self._kill_case(slot)
                slot.task, slot.tracker = None, None
                yield (
                    task,
                    Failure(
                        "timeout",
                        stage,
                        f"no result after {self.timeout:g} s (stage: {stage or 'unknown'}); "
                        "the case's process was killed. Raise --timeout if the case is just slow.",
                        elapsed,
                    ),
                )

    def _receive(self, slot: _Slot) -> dict | Failure | None:
        tracker = slot.tracker
        try:
            while slot.conn.poll():
                outcome = tracker.feed(slot.conn.recv())
                if outcome is not None:
                    return outcome
        except (EOFError, OSError):
            pass
        if slot.process.is_alive():
            return None  # only stage messages so far
        slot.process.join(1)
        return Failure(
            "crash",
            tracker.stage,
            _death(slot.process.exitcode, tracker.stage, "the worker's template process"),
            time.monotonic() - tracker.started,
        )

    def _kill_case(self, slot: _Slot) -> None:
        """Kill the case's process and its group; the template kills the rest of what it started and reports the
        end (ignored: a later task's messages carry another sequence number). A case not yet forked, or a
        template that does not answer, costs the template."""
        child = slot.tracker.child if slot.tracker else None
        if child is None or not slot.process.is_alive():
            self._replace(slot)
            return
        for kill in (lambda: os.killpg(child, signal.SIGKILL), lambda: os.kill(child, signal.SIGKILL)):
            try:
                kill()
            except OSError:
                pass

    def _kill(self, slot: _Slot) -> None:
        """Stop the template: it kills every descendant (what its case started, in any session) and its group."""
        if slot.tracker is not None and slot.tracker.child:
            for kill in (
                lambda: os.killpg(slot.tracker.child, signal.SIGKILL),
                lambda: os.kill(slot.tracker.child, signal.SIGKILL),
            ):
                try:
                    kill()
                except OSError:
                    pass
        if slot.process.is_alive() and slot.process.pid:
            try:
                os.kill(slot.process.pid, signal.SIGTERM)
            except OSError:
                pass
            slot.process.join(5)
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
        slot.process, slot.conn, slot.task, slot.tracker, slot.warmed = fresh.process, fresh.conn, None, None, False

    def close(self) -> None:
        for slot in self.slots:
            self._kill(slot)
            slot.conn.close()
        self.slots = []
        shutil.rmtree(self.result_dir, ignore_errors=True)


def _death(exitcode: int | None, stage: str | None, who: str = "the case's process") -> str:
    where = f" during {stage}" if stage else ""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: often the kernel's out-of-memory killer)" if name == "SIGKILL" else ""
        return f"{who} died from {name}{where}{hint}"
    return f"{who} exited with status {exitcode}{where} without reporting a result"
