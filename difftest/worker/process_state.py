"""Process-global state a case can change, put back after every case so the next one starts clean.

A worker runs many cases, and which cases share a worker depends on scheduling. A case that calls
``torch.set_default_dtype(torch.float64)``, starts an alarm, changes directory or flips TF32 would otherwise
change the verdicts of whatever runs after it on that worker, differently every night. Before each case the
worker takes a :func:`snapshot`; after it, :func:`restore` compares, puts back what it can and reports what
the case changed. What cannot be put back (inter-op threads once set, threads the case started and left
running) makes the worker retire after the case, so the next case gets a fresh process.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

_CATCHABLE = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)] if hasattr(
    signal, "valid_signals") else []
_TIMERS = [t for t in ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF") if hasattr(signal, t)]


@dataclass
class Item:
    """One piece of process state: how to read it, how to put it back (None: it cannot be), and how to say what
    a case changed (``change(before, now)``; None: nothing worth reporting, put back silently)."""

    name: str
    read: Callable[[], Any]
    write: Callable[[Any], None] | None
    change: Callable[[Any, Any], str | None] = lambda before, now: _repr_change(before, now)


@dataclass
class Snapshot:
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Restored:
    changed: list[str] = field(default_factory=list)  # what the case changed and was put back
    unrestorable: list[str] = field(default_factory=list)  # what could not be: the worker retires


def _items() -> list[Item]:
    import torch

    items = [
        Item("default dtype", torch.get_default_dtype, torch.set_default_dtype),
        Item("grad mode", torch.is_grad_enabled, torch.set_grad_enabled),
        Item("deterministic algorithms",
             lambda: (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled()),
             lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1])),
        Item("anomaly detection", torch.is_anomaly_enabled, torch.set_anomaly_enabled),
        Item("intra-op threads", torch.get_num_threads, torch.set_num_threads),
        Item("inter-op threads", torch.get_num_interop_threads, None),
        Item("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
        Item("TF32 and reduced-precision flags", _precision_flags, _set_precision_flags, _dict_change),
        # every stage reseeds: putting the random state back is hygiene, not a finding
        Item("random state (random, numpy, torch)",
             lambda: (random.getstate(), np.random.get_state(), torch.get_rng_state()),
             lambda v: (random.setstate(v[0]), np.random.set_state(v[1]), torch.set_rng_state(v[2])),
             lambda before, now: None),
        Item("numpy error handling", np.geterr, lambda v: np.seterr(**v), _dict_change),
        Item("signal handlers", _handlers, _set_handlers, _handlers_change),
        Item("alarms and interval timers", _timers, _set_timers, _dict_change),
        Item("working directory", os.getcwd, os.chdir),
        Item("environment variables", lambda: dict(os.environ), _set_environment, describe_environment_change),
        Item("warnings filters", lambda: list(warnings.filters), _set_filters,
             lambda before, now: f"{len(before)} filters → {len(now)} filters"),
        Item("recursion limit", sys.getrecursionlimit, sys.setrecursionlimit),
        Item("sys.path", _path, _set_path, lambda before, now: f"{len(before)} entries → {len(now)} entries"),
        Item("file creation mask", _umask, os.umask, lambda before, now: f"{oct(before)} → {oct(now)}"),
        # threads that ended are no change; threads the case left running cannot be stopped: the worker retires
        Item("threads", _threads, None, lambda before, now: None if set(now) <= set(before) else
             f"{', '.join(before) or 'none'} → {', '.join(now) or 'none'}"),
    ]
    if hasattr(torch, "get_default_device"):
        items.append(Item("default device", lambda: str(torch.get_default_device()), torch.set_default_device))
    return items


def snapshot() -> Snapshot:
    taken = Snapshot()
    for item in _items():
        try:
            taken.values[item.name] = item.read()
        except Exception:
            continue
    return taken


def restore(saved: Snapshot) -> Restored:
    """Put back every item that differs from ``saved``; say what the case changed."""
    result = Restored()
    for item in _items():
        if item.name not in saved.values:
            continue
        before = saved.values[item.name]
        try:
            now = item.read()
        except Exception:
            continue
        if _same(before, now):
            continue
        said = item.change(before, now)
        if said is None:
            if item.write is not None:
                item.write(before)
            continue
        change = f"{item.name}: {said}"
        if item.write is None:
            result.unrestorable.append(change)
            continue
        try:
            item.write(before)
            result.changed.append(change)
        except Exception as exc:
            result.unrestorable.append(f"{change} (could not be put back: {type(exc).__name__}: {exc})")
    return result


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(_same(x, y) for x, y in zip(a, b))
    try:
        import torch

        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            return bool(torch.equal(a, b))
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return bool(np.array_equal(a, b))
        return bool(a == b)
    except Exception:
        return False


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PRECISION_FLAGS = ("cuda.matmul.allow_tf32", "cuda.matmul.allow_fp16_reduced_precision_reduction",
                    "cuda.matmul.allow_bf16_reduced_precision_reduction", "cudnn.allow_tf32", "cudnn.deterministic",
                    "cudnn.benchmark", "cudnn.enabled")


def _flag_owner(name: str) -> tuple[Any, str]:
    import torch

    path, _, attr = name.rpartition(".")
    owner = torch.backends
    for part in path.split("."):
        owner = getattr(owner, part)
    return owner, attr


def _precision_flags() -> dict[str, Any]:
    return {name: getattr(*_flag_owner(name)) for name in _PRECISION_FLAGS}


def _set_precision_flags(values: dict[str, Any]) -> None:
    for name, value in values.items():
        owner, attr = _flag_owner(name)
        if getattr(owner, attr) != value:
            setattr(owner, attr, value)


def _handlers() -> dict[int, Any]:
    found = {}
    for sig in _CATCHABLE:
        try:
            found[int(sig)] = signal.getsignal(sig)
        except (ValueError, OSError):
            continue
    return found


def _set_handlers(handlers: dict[int, Any]) -> None:
    for sig, handler in handlers.items():
        if handler is None:
            continue
        try:
            if signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
        except (ValueError, OSError, TypeError):
            continue


def _timers() -> dict[str, tuple[float, float]]:
    """Pending timers only (an alarm's remaining seconds move on by themselves)."""
    found = {}
    for name in _TIMERS:
        delay, interval = signal.getitimer(getattr(signal, name))
        if delay or interval:
            found[name] = (round(delay, 1), interval)
    return found


def _set_timers(values: dict[str, tuple[float, float]]) -> None:
    for name in _TIMERS:
        delay, interval = values.get(name, (0.0, 0.0))
        signal.setitimer(getattr(signal, name), delay, interval)


def _set_environment(saved: dict[str, str]) -> None:
    for key in list(os.environ):
        if key not in saved:
            del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _repr_change(before: Any, now: Any) -> str:
    return f"{_shorten(repr(before))} → {_shorten(repr(now))}"


def _dict_change(before: dict, now: dict) -> str:
    keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return ", ".join(f"{k} {before.get(k)} → {now.get(k)}" for k in keys[:6])


def _handlers_change(before: dict, now: dict) -> str:
    keys = sorted(k for k in set(before) | set(now) if before.get(k) is not now.get(k))
    return ", ".join(signal.Signals(k).name for k in keys[:6]) + " replaced"


def _set_filters(filters: list) -> None:
    warnings.filters[:] = filters
    mutated = getattr(warnings, "_filters_mutated", None)  # invalidates the module's cache of filter decisions
    if mutated is not None:
        mutated()


def _threads() -> list[str]:
    """Threads that keep the process alive (daemon threads, like tqdm's monitor, end with it: not counted)."""
    return sorted(f"{t.name}" for t in threading.enumerate() if not t.daemon and t is not threading.main_thread())


def _suite_folders() -> list[str]:
    from ..suite.discover import SUITE_FOLDERS

    return SUITE_FOLDERS


def _path() -> list[str]:
    """sys.path without the suite folders difftest itself adds (see ``discover``)."""
    return [p for p in sys.path if p not in _suite_folders()]


def _set_path(saved: list[str]) -> None:
    sys.path[:] = [p for p in sys.path if p in _suite_folders()] + saved


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def describe_environment_change(before: dict[str, str], after: dict[str, str]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = [f"{label} {', '.join(keys[:5])}" for label, keys in (("set", added), ("removed", removed),
                                                                   ("changed", changed)) if keys]
    return "; ".join(parts)
