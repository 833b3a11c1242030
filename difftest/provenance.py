"""Where a run's results came from: the ``runs`` row (host, platform, library versions, GPU, difftest's commit,
the run's configuration) and the commit and dirty state of difftest's checkout and of the suites' repositories."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .run_config import RunConfig


def runs_row(
    run_id: str,
    config: RunConfig,
    requested: list[str],
    available: list[str],
    skipped: dict[str, str],
    reference: str,
    started: float,
) -> dict[str, Any]:
    return {
        "run": run_id,
        "started": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "finished": None,
        "seconds": None,
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": library_versions(),
        "gpu": _gpu(),
        "backends_requested": requested,
        "backends_available": available,
        "backends_skipped": skipped,
        "reference": reference,
        "targets": list(config.targets),
        "config": json.dumps(dataclasses.asdict(config)),
        "shard": config.shard,
    }


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu", "numpy", "polars"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    versions["torch.cuda"] = _torch_cuda_version()
    return versions


def _torch_cuda_version() -> str:
    """torch's CUDA version from its version.py, without importing torch into the parent process."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return "no torch"
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return "unknown"
    match = re.search(r"^cuda\b[^=]*=\s*(.+)$", text, re.MULTILINE)
    value = match.group(1).strip().strip("'\"") if match else "unknown"
    return "none" if value == "None" else value


def repositories(targets: list[str]) -> dict[str, dict[str, Any]]:
    """Commit and dirty state of difftest's own checkout and of each repository the suites live in."""
    places = {"difftest": Path(__file__).resolve().parent}
    for target in targets:
        path = Path(target.partition("::")[0])
        places.setdefault(f"suites ({path})", path if path.is_dir() else path.parent)
    found: dict[str, dict[str, Any]] = {}
    seen_roots: dict[str, str] = {}
    for label, folder in places.items():
        root = _git(folder, "rev-parse", "--show-toplevel")
        entry: dict[str, Any] = {"root": None, "commit": None, "dirty": None, "same_as": None}
        found[label] = entry
        if root is None:
            continue
        if root in seen_roots:
            entry["same_as"] = seen_roots[root]
            continue
        seen_roots[root] = label
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
        entry.update(
            root=root,
            commit=_git(folder, "rev-parse", "--verify", "-q", "HEAD"),
            dirty=bool(status) if status is not None else None,
        )
    return found


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_commit() -> str | None:
    return _git(Path(__file__).resolve().parent, "rev-parse", "--verify", "-q", "HEAD") or None


def _gpu() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
