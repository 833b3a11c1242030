"""A content-addressed cache of exports, shared by runs and by concurrent workers.

Export dominates a run (the dynamo exporter takes seconds per model; ONNX Runtime milliseconds), and a
nightly job exports the same models every night. An export is stored under a key that hashes everything
it depends on: the case id and its suite file, the source of every user module the suite and the model's
classes come from (helper modules and configs the suite imports, outside site-packages), the source of
every module class in the model, its parameters and all its buffers (non-persistent ones included: rotary
frequencies computed from a config), its other attributes, the inputs, the exporter and its options, the
transforms' source, and the versions of torch/onnx/onnxscript and of difftest's own export code.

The cache trusts nothing it reads back: an entry's model is re-hashed against the digest it was stored with
and its recorded key must be the one asked for, or the entry is dropped (a truncated or swapped file is never
served). Successful exports are served from the cache; a failed export only once it has failed twice with
the same message (a failure seen once may be transient: a busy resource); the case row says which
(``export_cache``).

Entries are written to a temporary file and renamed, so concurrent workers never read half an entry; the
cache is pruned oldest-first (by last use) past its size bound. ``clear`` and pruning touch only entries the
cache wrote: files named by a key under a root that carries the cache's marker file.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 2 * 2**30
MARKER = "DIFFTEST-EXPORT-CACHE"
_ENTRY = re.compile(r"^[0-9a-f]{64}$")
FAILURES_TO_TRUST = 2  # a failure is replayed once seen this many times with the same message


def default_root() -> Path:
    if os.environ.get("DIFFTEST_CACHE_DIR"):
        return Path(os.environ["DIFFTEST_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "difftest" / "exports"


class ExportCache:
    def __init__(self, root: Path | str | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root) if root else default_root()
        self.max_bytes = max_bytes

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.onnx", folder / f"{key}.json"

    def get(self, key: str):
        """The cached ExportResult (``cache_note`` says how it was served), or None."""
        from .exporter import ExportResult

        model_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            data = model_path.read_bytes() if meta.get("has_model") else None
        except (OSError, ValueError):
            return None
        problem = _invalid(key, meta, data)
        if problem is not None:
            self._drop(key)
            return None
        if data is None and int(meta.get("seen", 1)) < FAILURES_TO_TRUST:
            return None  # a failure seen once is not replayed: export again, it may have been transient
        now = time.time()
        try:
            os.utime(meta_path, (now, now))  # last use, for pruning
        except OSError:
            pass
        fields = {k: v for k, v in meta.items() if k not in ("has_model", "key", "seen", "cache_note", "model_sha256")}
        result = ExportResult(
            onnx_bytes=data, **{k: v for k, v in fields.items() if k in ExportResult.__dataclass_fields__}
        )
        result.cache_note = (
            "served from the export cache (its digest verified)"
            if data is not None
            else f"failure replayed from the export cache (it failed {meta.get('seen')} times with this "
            "message, so it is deterministic)"
        )
        return result

    def put(self, key: str, result: Any) -> None:
        """Store a successful export; count a failure (served only once it repeats identically)."""
        model_path, meta_path = self._paths(key)
        try:
            model_path.parent.mkdir(parents=True, exist_ok=True)
            self._mark()
            meta = {k: v for k, v in vars(result).items() if k not in ("onnx_bytes", "cache_note", "program")}
            meta.update(has_model=result.onnx_bytes is not None, key=key)
            if result.onnx_bytes is not None:
                meta["model_sha256"] = hashlib.sha256(result.onnx_bytes).hexdigest()
            if result.onnx_bytes is None:
                try:
                    previous = json.loads(meta_path.read_text())
                except (OSError, ValueError):
                    previous = {}
                same = previous.get("error") == result.error and previous.get("stage") == result.stage
                meta["seen"] = int(previous.get("seen", 0)) + 1 if same else 1
                result.cache_note = (
                    f"failure noted in the export cache (seen {meta['seen']} time(s); replayed once "
                    f"seen {FAILURES_TO_TRUST} times identically)"
                )
            else:
                _write_atomic(model_path, result.onnx_bytes)
                result.cache_note = result.cache_note or "exported and stored in the export cache"
            _write_atomic(meta_path, json.dumps(meta).encode())  # last: its presence completes the entry
        except OSError:
            return  # a cache that cannot be written only costs time
        self.prune()

    def _mark(self) -> None:
        marker = self.root / MARKER
        if not marker.exists():
            marker.write_text("This folder is difftest's export cache; `difftest cache clear` empties it.\n")

    def _drop(self, key: str) -> None:
        for path in self._paths(key):
            try:
                path.unlink()
            except OSError:
                pass

    def entries(self) -> list[tuple[Path, int, float]]:
        """(meta path, bytes of the entry, last use) for every entry this cache wrote."""
        found = []
        if not (self.root / MARKER).is_file():
            return found  # not a folder the cache made: touch nothing in it
        for meta in self.root.glob("*/*.json"):
            if not _ENTRY.match(meta.stem) or meta.parent.name != meta.stem[:2]:
                continue
            model = meta.with_suffix(".onnx")
            try:
                size = meta.stat().st_size + (model.stat().st_size if model.exists() else 0)
                found.append((meta, size, meta.stat().st_mtime))
            except OSError:
                continue
        return found

    def prune(self) -> None:
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        for meta, size, _ in sorted(entries, key=lambda e: e[2]):
            self._drop(meta.stem)
            total -= size
            if total <= self.max_bytes * 0.8:
                break

    def info(self) -> dict[str, Any]:
        entries = self.entries()
        return {
            "root": str(self.root),
            "entries": len(entries),
            "bytes": sum(s for _, s, _ in entries),
            "max_bytes": self.max_bytes,
        }

    def clear(self) -> int:
        count = 0
        for meta, _, _ in self.entries():
            self._drop(meta.stem)
            count += 1
        return count


def _invalid(key: str, meta: dict[str, Any], data: bytes | None) -> str | None:
    """Why an entry read back cannot be trusted, or None."""
    if meta.get("key") != key:
        return "the entry records another key (a swapped file)"
    if meta.get("has_model"):
        if data is None or hashlib.sha256(data).hexdigest() != meta.get("model_sha256"):
            return "the model does not match its recorded digest (truncated or replaced)"
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    from ..record.tables import removed_on_failure

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with removed_on_failure(temporary):
        temporary.write_bytes(data)
        os.replace(temporary, path)


def export_key(
    case_id: str, suite_path: str, module: Any, inputs: list[tuple[str, Any]], options: dict[str, Any]
) -> str:
    """Hash of everything an export depends on (see the module docstring)."""
    import torch

    digest = hashlib.sha256()

    def add(label: str, value: Any) -> None:
        digest.update(label.encode())
        digest.update(value if isinstance(value, bytes) else repr(value).encode())

    add("case", case_id)
    try:
        add("suite", Path(suite_path).read_bytes())
    except OSError:
        add("suite", suite_path)
    from ..suite import model_io
    from . import exporter as export_module

    for code in (export_module, model_io):
        add("difftest", inspect.getsource(code))
    if isinstance(module, torch.nn.Module):
        for _, sub in module.named_modules():
            add("class", _class_source(type(sub)))
            add("attributes", _attributes(sub))
        for name, tensor in module.named_parameters(remove_duplicate=False):
            add(f"parameter:{name}", _tensor_bytes(tensor))
        for name, tensor in module.named_buffers(remove_duplicate=False):  # non-persistent ones too
            add(f"buffer:{name}", _tensor_bytes(tensor))
    else:
        add("callable", _source(module))
    for name, source in user_module_sources(suite_path, module):
        add(f"module:{name}", source)
    for name, value in inputs:
        add(f"input:{name}", _tensor_bytes(value) if isinstance(value, torch.Tensor) else repr(value))
    for name, value in sorted(options.items()):
        add(f"option:{name}", _option_text(value))
    add("versions", _versions())
    return digest.hexdigest()


def user_module_sources(suite_path: str, model: Any) -> list[tuple[str, bytes]]:
    """(module name, source) of every user module the suite file and the model's classes depend on: the suite's
    module, the modules of the model's classes and functions, and, transitively, every module they import or
    take names from, skipping the standard library, site-packages and difftest itself. A helper module or a
    config file read at import changes the key when its source changes."""
    import torch

    objects = [type(sub) for sub in model.modules()] if isinstance(model, torch.nn.Module) else [model]
    owners = tuple(sorted({getattr(obj, "__module__", None) or "" for obj in objects}))
    return list(_user_module_sources(str(Path(suite_path).resolve()), owners))


@functools.lru_cache(maxsize=256)
def _user_module_sources(resolved: str, owners: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    """Cached per worker: the modules a worker has imported do not change their source during a run."""
    import types

    roots: list[types.ModuleType] = []
    name = Path(resolved).name
    roots += [
        m
        for m in list(sys.modules.values())
        if str(getattr(m, "__file__", None) or "").endswith(name) and _file_of(m) == resolved
    ]
    roots += [sys.modules[owner] for owner in owners if owner in sys.modules]
    seen: dict[str, bytes] = {}
    stack = list(roots)
    while stack:
        module = stack.pop()
        path = _file_of(module)
        if path is None or module.__name__ in seen or not _is_user_file(path):
            continue
        try:
            seen[module.__name__] = Path(path).read_bytes()
        except OSError:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, types.ModuleType):
                stack.append(value)
            else:
                owner = (
                    sys.modules.get(getattr(value, "__module__", None) or "") if hasattr(value, "__module__") else None
                )
                if owner is not None:
                    stack.append(owner)
    return tuple(sorted(seen.items()))


def _file_of(module: Any) -> str | None:
    path = getattr(module, "__file__", None)
    try:
        return str(Path(path).resolve()) if path else None
    except (OSError, TypeError):
        return None


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(str(Path(__file__).resolve().parent))  # difftest itself is versioned separately
    return tuple(str(Path(r).resolve()) for r in roots)


def _is_user_file(path: str) -> bool:
    if "site-packages" in path or "dist-packages" in path:
        return False
    return not any(path.startswith(root + os.sep) for root in _library_roots())


def _option_text(value: Any) -> str:
    """An option as text for the key: functions by their source, containers item by item."""
    if callable(value):
        return _source(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_option_text(v) for v in value) + "]"
    return repr(value)


@functools.lru_cache(maxsize=4096)
def _class_source(cls: type) -> str:
    """A class's source, read once per worker (inspect.getsource tokenizes the whole file each time)."""
    return _source(cls)


def _source(obj: Any) -> str:
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError):
        text = getattr(obj, "__qualname__", repr(obj))
    closure = getattr(obj, "__closure__", None) or ()
    defaults = getattr(obj, "__defaults__", None) or ()
    cells = []
    for cell in closure:
        try:
            cells.append(_source(cell.cell_contents) if callable(cell.cell_contents) else repr(cell.cell_contents))
        except ValueError:
            cells.append("<empty>")
    return _ADDRESS.sub("", text + repr(defaults) + "".join(cells))


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _attributes(module: Any) -> str:
    """Plain attributes that can change what forward computes (flags, sizes, functions)."""
    import torch

    skip = {"training", "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"}
    parts = []
    for name, value in sorted(vars(module).items()):
        if name in skip or name.startswith("_forward") or name.startswith("_backward") or name.endswith("hooks"):
            continue
        if isinstance(value, torch.Tensor):
            text = repr(_tensor_bytes(value))
        else:
            text = _source(value) if callable(value) else _stable_repr(value)
        parts.append(f"{name}={_ADDRESS.sub('', text)}")
    return ";".join(parts)


def _stable_repr(value: Any, depth: int = 0) -> str:
    """``repr`` with sets in sorted order: a set of strings is printed in hash order, which changes with
    PYTHONHASHSEED from one process to the next (transformers models keep ``_no_split_modules`` sets), and a
    key that changes per process would re-export every case on every warm run."""
    if depth > 4:
        return repr(value)
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(_stable_repr(v, depth + 1) for v in value)) + "}"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(sorted(f"{_stable_repr(k, depth + 1)}: {_stable_repr(v, depth + 1)}" for k, v in value.items()))
            + "}"
        )
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_stable_repr(v, depth + 1) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return repr(value)


def _tensor_bytes(tensor: Any) -> bytes:
    import torch

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return f"{tensor.dtype}{tuple(tensor.shape)}".encode() + hashlib.sha256(raw).digest()


def warm_up() -> None:
    """Compute once, in a worker's template process, what every key needs and no case changes (library versions
    and folders), so the cases forked from it do not each compute it again."""
    _versions()
    _library_roots()


@functools.lru_cache(maxsize=1)
def _versions() -> str:
    from importlib import metadata

    found = []
    for dist in ("torch", "onnx", "onnxscript", "onnxconverter-common", "onnxslim"):
        try:
            found.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ",".join(found)
