"""Process-global state a case can change: read before and after a case, said on the case, and put back where a
case ran in a process that is used again.

Cases of a run each start in a clean process (see ``pool``), so nothing here is needed to keep one case from
reaching the next: :func:`changes` only says what a case changed (its process ended with it). The in-process
mode of ``difftest.check`` / ``Session`` (``isolate="none"``, for debugging) runs cases in the caller's process;
there :func:`snapshot` and :func:`restore` put back what can be put back and report what cannot. A piece of state
whose getter raises (the legacy TF32 flags do once a case mixed them with the ``fp32_precision`` API) is
reported as unrestorable, never skipped.
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

_CATCHABLE = (
    [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]
    if hasattr(signal, "valid_signals")
    else []
)
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
        Item(
            "deterministic algorithms",
            lambda: (
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            ),
            lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1]),
        ),
        Item("anomaly detection", torch.is_anomaly_enabled, torch.set_anomaly_enabled),
        Item("intra-op threads", torch.get_num_threads, torch.set_num_threads),
        Item("inter-op threads", torch.get_num_interop_threads, None),
        Item("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
        Item("fp32_precision settings", _fp32_precision, _set_fp32_precision, _dict_change),
        Item("TF32 and reduced-precision flags", _precision_flags, _set_precision_flags, _dict_change),
        Item("autocast", _autocast, _set_autocast, _dict_change),
        Item("flush-denormal mode", _flush_denormal, torch.set_flush_denormal),
        # every stage reseeds: putting the random state back is hygiene, not a finding
        Item(
            "random state (random, numpy, torch)",
            lambda: (random.getstate(), np.random.get_state(), torch.get_rng_state()),
            lambda v: (random.setstate(v[0]), np.random.set_state(v[1]), torch.set_rng_state(v[2])),
            lambda before, now: None,
        ),
        Item("numpy error handling", np.geterr, lambda v: np.seterr(**v), _dict_change),
        Item("signal handlers", _handlers, _set_handlers, _handlers_change),
        Item("alarms and interval timers", _timers, _set_timers, _dict_change),
        Item("working directory", os.getcwd, os.chdir),
        Item("environment variables", lambda: dict(os.environ), _set_environment, describe_environment_change),
        Item(
            "warnings filters",
            lambda: list(warnings.filters),
            _set_filters,
            lambda before, now: f"{len(before)} filters → {len(now)} filters",
        ),
        Item("recursion limit", sys.getrecursionlimit, sys.setrecursionlimit),
        Item("sys.path", _path, _set_path, lambda before, now: f"{len(before)} entries → {len(now)} entries"),
        Item("file creation mask", _umask, os.umask, lambda before, now: f"{oct(before)} → {oct(now)}"),
        # threads that ended are no change; threads the case left running cannot be stopped: the worker retires
        Item(
            "threads",
            _threads,
            None,
            lambda before, now: (
                None if set(now) <= set(before) else f"{', '.join(before) or 'none'} → {', '.join(now) or 'none'}"
            ),
        ),
    ]
    if hasattr(torch, "get_default_device"):
        items.append(Item("default device", lambda: str(torch.get_default_device()), torch.set_default_device))
    return items


@dataclass
class Unreadable:
    """A getter that raised: the state cannot be compared, so it cannot be put back either."""

    error: str


def _read(item: Item) -> Any:
    try:
        return item.read()
    except Exception as exc:
        return Unreadable(f"{type(exc).__name__}: {_shorten(str(exc).splitlines()[0] if str(exc) else '')}")


def snapshot() -> Snapshot:
    taken = Snapshot()
    for item in _items():
        taken.values[item.name] = _read(item)
    return taken


def changes(saved: Snapshot) -> Restored:
    """What differs from ``saved``, put back nowhere (the case's process ends with it): ``changed`` lists what
    could have been put back, ``unrestorable`` what could not."""
    return restore(saved, write=False)


def restore(saved: Snapshot, write: bool = True) -> Restored:
    """Put back every item that differs from ``saved`` (with ``write``); say what the case changed."""
    result = Restored()
    for item in _items():
        before = saved.values.get(item.name, Unreadable("not read before the case"))
        now = _read(item)
        if isinstance(before, Unreadable) or isinstance(now, Unreadable):
            if isinstance(before, Unreadable) and isinstance(now, Unreadable) and before == now:
                continue  # unreadable all along, the same way: not the case's doing
            when = "before" if isinstance(before, Unreadable) else "after"
            error = before.error if isinstance(before, Unreadable) else now.error
            result.unrestorable.append(f"{item.name}: could not be read {when} the case ({error})")
            continue
        if _same(before, now):
            continue
        said = item.change(before, now)
        if said is None:
            if item.write is not None and write:
                item.write(before)
            continue
        change = f"{item.name}: {said}"
        if item.write is None:
            result.unrestorable.append(change)
            continue
        if not write:
            result.changed.append(change)
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


_PRECISION_FLAGS = (
    "cuda.matmul.allow_tf32",
    "cuda.matmul.allow_fp16_reduced_precision_reduction",
    "cuda.matmul.allow_bf16_reduced_precision_reduction",
    "cudnn.allow_tf32",
    "cudnn.deterministic",
    "cudnn.benchmark",
    "cudnn.enabled",
)


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


_FP32_PRECISION = (
    "fp32_precision",
    "cuda.matmul.fp32_precision",
    "cudnn.fp32_precision",
    "cudnn.conv.fp32_precision",
    "cudnn.rnn.fp32_precision",
    "mkldnn.fp32_precision",
    "mkldnn.matmul.fp32_precision",
    "mkldnn.conv.fp32_precision",
    "mkldnn.rnn.fp32_precision",
)


def _fp32_precision() -> dict[str, Any]:
    """torch's newer per-backend precision API (``torch.backends.*.fp32_precision``), where this torch has it."""
    found = {}
    for name in _FP32_PRECISION:
        try:
            owner, attr = _flag_owner(name) if "." in name else (__import__("torch").backends, name)
        except AttributeError:
            continue
        if hasattr(owner, attr):
            found[name] = getattr(owner, attr)
    return found


def _set_fp32_precision(values: dict[str, Any]) -> None:
    import torch

    for name, value in values.items():
        owner, attr = _flag_owner(name) if "." in name else (torch.backends, name)
        if getattr(owner, attr) != value:
            setattr(owner, attr, value)


_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu", "xla", "ipu", "mtia")


def _autocast() -> dict[str, Any]:
    """Autocast per device type: (enabled, dtype), and whether its cast cache is on."""
    import torch

    found: dict[str, Any] = {"cache": torch.is_autocast_cache_enabled()}
    for device in _AUTOCAST_DEVICES:
        try:
            found[device] = (torch.is_autocast_enabled(device), str(torch.get_autocast_dtype(device)))
        except (RuntimeError, TypeError, AttributeError):  # a device type this torch does not know
            continue
    return found


def _set_autocast(values: dict[str, Any]) -> None:
    import torch

    for device, value in values.items():
        if device == "cache":
            torch.set_autocast_cache_enabled(value)
            continue
        enabled, dtype = value
        torch.set_autocast_enabled(device, enabled)
        torch.set_autocast_dtype(device, getattr(torch, dtype.removeprefix("torch.")))


def _flush_denormal() -> bool:
    """Whether denormals are flushed to zero on this thread (torch has no getter: a denormal times one tells)."""
    import torch

    return float(torch.tensor(1e-39, dtype=torch.float32) * 1.0) == 0.0


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
    parts = [
        f"{label} {', '.join(keys[:5])}"
        for label, keys in (("set", added), ("removed", removed), ("changed", changed))
        if keys
    ]
    return "; ".join(parts)
