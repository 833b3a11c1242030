"""Localization during a run: each ONNX candidate whose base-probe outputs fail is localized within the
case's time budget, and the result is cached beside the export (a nightly run re-localizes only what
changed). Runs inside the worker, after the case's backends have run."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ..backends import REGISTRY
from ..record.columns import LOCALIZATION, conform
from ..record.names import slug
from ..suite.cases import Case
from .task import Task, enter_stage
from .case_run import CaseRow


def localize_failures(
    task: Task, built: Case, candidates: list[Any], failing: dict[str, set[str]], row: CaseRow, exports: Any
) -> None:
    """Localize each ONNX candidate that fails on values on the base probe (``failing``: candidate -> probes, as
    the case's own judge found them, tolerances included), within the budget, in the graph it ran: the worker's
    export (``exports``, the case's ``CaseExports``), so nothing is exported again and the user's own file is
    localized as it ran (difftest's own dynamo export, where the case made one, maps eager's values onto it).

    A localization is a function of the same things as its export (plus the candidate), so it is cached
    beside the export: a nightly run re-localizes only what changed."""
    from ..localize.divergence import localize

    deadline = time.monotonic() + task.localize_budget
    found: dict[str, Any] = {}
    cache_keys = {c.name: exports.keys.get(c.export_key(row.exporter)) for c in candidates}
    own_export = exports.done.get(("dynamo", None))
    for candidate in candidates:
        if not REGISTRY[candidate.backend].needs_onnx or "base" not in failing.get(candidate.name, ()):
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            found[candidate.name] = {"status": "not_found", "reason": "the case's localization budget was spent"}
            continue
        enter_stage(f"localize ({candidate.name})")
        folder = Path(task.artifacts_dir).parent / "localize" / f"{slug(task.ref.id)}-{_safe_name(candidate.name)}"
        cached = _cached_localization(task, cache_keys.get(candidate.name), candidate.name)
        if cached is not None:
            found[candidate.name] = {**cached, "cached": True, "repro": _copy_bundle(cached.get("repro"), folder)}
            continue
        result = localize(
            task.ref,
            candidate.name,
            "torch",
            "base",
            folder,
            left,
            built,
            graph=exports.done.get(candidate.export_key(row.exporter)),
            own_export=own_export,
        )
        found[candidate.name] = json.loads(result.to_json())
        _store_localization(task, cache_keys.get(candidate.name), candidate.name, found[candidate.name])
    if found:
        row.localization = found


def _copy_bundle(source: str | None, folder: Path) -> str | None:
    """Bring a cached localization's repro bundle into this run, so the run directory stands alone."""
    import shutil

    if not source or not Path(source).is_dir():
        return None
    try:
        shutil.copytree(source, folder, dirs_exist_ok=True)
    except OSError:
        return None
    return str(folder)


def _localization_path(task: Task, cache_key: str | None, candidate: str) -> Path | None:
    if not task.cache_dir or not cache_key:
        return None
    digest = hashlib.sha256(f"{cache_key}|{candidate}|torch|base".encode()).hexdigest()
    return Path(task.cache_dir) / "localize" / f"{digest}.json"


def _cached_localization(task: Task, cache_key: str | None, candidate: str) -> dict[str, Any] | None:
    path = _localization_path(task, cache_key, candidate)
    try:
        return conform(LOCALIZATION, json.loads(path.read_text())) if path is not None else None
    except (OSError, ValueError):
        return None


def _store_localization(task: Task, cache_key: str | None, candidate: str, result: dict[str, Any]) -> None:
    path = _localization_path(task, cache_key, candidate)
    if path is None or result.get("status") not in ("found", "no_divergence", "unsupported"):
        return  # errors and spent budgets are retried next time
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(result))
        os.replace(temporary, path)
    except OSError:
        pass


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
