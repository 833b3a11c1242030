"""A content-addressed cache of exports, shared by runs and by concurrent workers.

Export dominates a run (the dynamo exporter takes seconds per model; ONNX Runtime milliseconds), and a
nightly job exports the same models every night. An export is stored under a key that hashes everything
it depends on: the case id and its suite file, the source of every module class in the model, its
weights and other attributes, the inputs, the exporter and its options, the transforms' source, the
versions of torch/onnx/onnxscript and of difftest's own export code. Change any of them and the key
changes. Failed exports are cached too (they are deterministic and often the slowest).

Entries are written to a temporary file and renamed, so concurrent workers never read half an entry; the
cache is pruned oldest-first (by last use) past its size bound.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
import time
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 2 * 2**30


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
        """The cached ExportResult, or None."""
        from .export import ExportResult

        model_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            data = model_path.read_bytes() if meta.get("has_model") else None
        except (OSError, ValueError):
            return None
        now = time.time()
        try:
            os.utime(meta_path, (now, now))  # last use, for pruning
        except OSError:
            pass
        fields = {k: v for k, v in meta.items() if k not in ("has_model", "key")}
        return ExportResult(onnx_bytes=data, **fields)

    def put(self, key: str, result: Any) -> None:
        model_path, meta_path = self._paths(key)
        try:
            model_path.parent.mkdir(parents=True, exist_ok=True)
            meta = {k: v for k, v in vars(result).items() if k != "onnx_bytes"}
            meta.update(has_model=result.onnx_bytes is not None, key=key)
            if result.onnx_bytes is not None:
                _write_atomic(model_path, result.onnx_bytes)
            _write_atomic(meta_path, json.dumps(meta).encode())  # last: its presence completes the entry
        except OSError:
            return  # a cache that cannot be written only costs time
        self.prune()

    def entries(self) -> list[tuple[Path, int, float]]:
        """(meta path, bytes of the entry, last use) for every complete entry."""
        found = []
        if not self.root.exists():
            return found
        for meta in self.root.glob("*/*.json"):
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
            for path in (meta, meta.with_suffix(".onnx")):
                try:
                    path.unlink()
                except OSError:
                    pass
            total -= size
            if total <= self.max_bytes * 0.8:
                break

    def info(self) -> dict[str, Any]:
        entries = self.entries()
        return {"root": str(self.root), "entries": len(entries), "bytes": sum(s for _, s, _ in entries),
                "max_bytes": self.max_bytes}

    def clear(self) -> int:
        count = 0
        for meta, _, _ in self.entries():
            for path in (meta, meta.with_suffix(".onnx")):
                try:
                    path.unlink()
                    count += path.suffix == ".json"
                except OSError:
                    pass
        return count


def _write_atomic(path: Path, data: bytes) -> None:
    from .tables import removed_on_failure

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with removed_on_failure(temporary):
        temporary.write_bytes(data)
        os.replace(temporary, path)


def export_key(case_id: str, suite_path: str, module: Any, inputs: list[tuple[str, Any]], options: dict[str, Any]) -> str:
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
    from . import export as export_module, model_io

    for code in (export_module, model_io):
        add("difftest", inspect.getsource(code))
    if isinstance(module, torch.nn.Module):
        for name, sub in module.named_modules():
            add("class", _class_source(type(sub)))
            add("attributes", _attributes(sub))
        for name, tensor in module.state_dict().items():
            add(f"state:{name}", _tensor_bytes(tensor))
    else:
        add("callable", _source(module))
    for name, value in inputs:
        add(f"input:{name}", _tensor_bytes(value) if isinstance(value, torch.Tensor) else repr(value))
    for name, value in sorted(options.items()):
        add(f"option:{name}", _option_text(value))
    add("versions", _versions())
    return digest.hexdigest()


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
            text = _source(value) if callable(value) else repr(value)
        parts.append(f"{name}={_ADDRESS.sub('', text)}")
    return ";".join(parts)


def _tensor_bytes(tensor: Any) -> bytes:
    import torch

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return f"{tensor.dtype}{tuple(tensor.shape)}".encode() + hashlib.sha256(raw).digest()


def _versions() -> str:
    from importlib import metadata

    found = []
    for dist in ("torch", "onnx", "onnxscript", "onnxconverter-common", "onnxslim"):
        try:
            found.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ",".join(found)
