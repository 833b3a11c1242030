"""The run's tables: schemas, row builders, per-case parts and the parquet files.

Rows are appended per case as small parquet "parts" written atomically
(temporary file + rename), so a killed run keeps every case it finished.
At the end the parts are concatenated into ``<table>.parquet``. Nothing here
pickles: tensors are stored as raw bytes with dtype and shape beside them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import RunDataError
from .columns import COLUMN_KINDS, STRUCTURED, ColumnValueError, decode_row, from_json_text
from .columns import decode as decode_column
from .columns import encode as encode_column

TABLES = ("runs", "cases", "tensors", "comparisons")


_RUNS_COLUMNS: dict[str, str] = {
    "run": "str",
    "started": "str",
    "finished": "str",
    "seconds": "float",
    "git_commit": "str",
    "host": "str",
    "platform": "str",
    "python": "str",
    "versions": "structured",
    "gpu": "str",
    "backends_requested": "strs",
    "backends_available": "strs",
    "backends_skipped": "structured",
    "reference": "str",
    "oracle": "str",
    "targets": "strs",
    "config": "str",
    "phase_seconds": "structured",
    "shard": "str",
    "environment": "structured",
}


_CASES_COLUMNS: dict[str, str] = {
    "run": "str",
    "case": "str",
    "suite": "str",
    "name": "str",
    "path": "str",
    "tags": "strs",
    "description": "str",
    "exporter": "str",
    "reference": "str",
    "status": "str",
    "stage": "str",
    "message": "str",
    "traceback": "str",
    "seconds": "float",
    "export_status": "str",
    "export_stage": "str",
    "export_error": "str",
    "export_seconds": "float",
    "export_cached": "bool",
    "onnx_digest": "str",
    "onnx_path": "str",
    "opset": "int",
    "node_count": "int",
    "inputs": "strs",
    "outputs": "strs",
    "graph_inputs": "strs",
    "graph_outputs": "strs",
    "dropped_inputs": "strs",
    "exports": "structured",
    "probes": "strs",
    "expect": "structured",
    "tolerances": "structured",
    "warnings": "strs",
    "log": "str",
    "localization": "structured",
    "state_changes": "strs",
    "export_warnings": "strs",
    "rewrites": "strs",
    "controls": "structured",
    "isolation": "strs",
    "export_cache": "str",
}


_TENSORS_COLUMNS: dict[str, str] = {
    "run": "str",
    "case": "str",
    "probe": "str",
    "backend": "str",
    "rerun": "int",
    "output": "str",
    "index": "int",
    "status": "str",
    "stage": "str",
    "message": "str",  # why the row failed or was skipped
    "full": "structured",
    "about": "str",  # a pseudo-backend's description of its values (JSON: one record per pseudo-backend)
    "dtype": "str",
    "shape": "ints",
    "data": "bytes",
    "sampled": "bool",
    "digest": "str",
    "min": "float",
    "max": "float",
    "mean": "float",
    "nan_count": "int",
    "inf_count": "int",
    "seconds": "float",
    "prepare_seconds": "float",
    "providers": "strs",
    "traceback": "str",
}


_COMPARISONS_COLUMNS: dict[str, str] = {
    "run": "str",
    "case": "str",
    "probe": "str",
    "output": "str",
    "reference": "str",
    "candidate": "str",
    "label": "str",
    "passed": "bool",
    "max_abs": "float",
    "mean_abs": "float",
    "max_rel": "float",
    "mismatched": "int",
    "count": "int",
    "ulp_max": "float",
    "ulp_p50": "float",
    "ulp_p99": "float",
    "rtol": "float",
    "atol": "float",
    "worst_index": "ints",
    "evidence": "str",
    "blame": "str",
    "blame_rule": "str",
    "blame_reason": "str",
    "stage": "str",
    "accepted_by": "str",
    "tolerance_ratio": "float",
    # a failing numeric comparison: the smallest atol (rtol=0) and rtol (atol=0) that cover every
    # difference, and |Δ| and relative error statistics (``judge.compare.error_statistics``)
    "min_atol": "float",
    "min_rtol": "float",
    "abs_mean": "float",
    "abs_median": "float",
    "abs_p99": "float",
    "rel_mean": "float",
    "rel_median": "float",
    "rel_p99": "float",
    "next_step": "str",  # what to do about a failure, when difftest knows (``judge.next_step``)
}


def _declared() -> dict[str, dict[str, str]]:
    return {
        "runs": _RUNS_COLUMNS,
        "cases": _CASES_COLUMNS,
        "tensors": _TENSORS_COLUMNS,
        "comparisons": _COMPARISONS_COLUMNS,
    }


def columns(table: str) -> tuple[str, ...]:
    """The table's column names, in order (without importing polars: a worker checks its rows against them)."""
    return tuple(_declared()[table])


def schema(table: str) -> dict[str, Any]:
    """The table's columns and their polars types (a declaration's kind is one of ``columns.COLUMN_KINDS``, or
    "structured": ``columns.STRUCTURED`` has its type)."""
    return {
        name: (STRUCTURED[table][name] if kind == "structured" else COLUMN_KINDS[kind]).dtype()
        for name, kind in _declared()[table].items()
    }


def frame(table: str, rows: Iterable[dict[str, Any]]):
    """A DataFrame with exactly the table's columns and types (missing keys are null)."""
    import polars as pl

    columns = schema(table)
    rows = list(rows)
    structured = STRUCTURED.get(table, {})
    data = {
        name: [encode_column(table, name, row.get(name)) if name in structured else row.get(name) for row in rows]
        for name in columns
    }
    return pl.DataFrame(data, schema=columns)


def tensor_row(
    task: Any,
    backend: str,
    probe: str,
    *,
    output: str | None = None,
    index: int | None = None,
    array: np.ndarray | None = None,
    status: str = "ok",
    stage: str | None = None,
    message: str | None = None,
    full: dict[str, Any] | None = None,
    about: dict[str, Any] | None = None,
    seconds: float | None = None,
    prepare_seconds: float | None = None,
    providers: list[str] | None = None,
    rerun: int = 0,
    max_bytes: int = 256 * 2**20,
    traceback: str | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run": task.run_id,
        "case": task.ref.id,
        "probe": probe,
        "backend": backend,
        "rerun": rerun,
        "output": output,
        "index": index,
        "status": status,
        "stage": stage,
        "message": message,
        "full": full,
        "about": json.dumps(about) if about is not None else None,
        "seconds": seconds,
        "prepare_seconds": prepare_seconds,
        "providers": providers,
        "traceback": traceback,
    }
    if array is not None:
        row.update(encode(array, max_bytes))
    return row


def row_dicts(frame: Any, table: str) -> list[dict[str, Any]]:
    """A table's rows as the stages use them: ``DataFrame.to_dicts`` with the structured columns decoded into the
    Python values the worker wrote (``columns``)."""
    return [decode_row(table, row) for row in frame.to_dicts()]


def encode(array: np.ndarray, max_bytes: int) -> dict[str, Any]:
    """Raw bytes plus what is needed to read them back; huge arrays keep an even sample."""
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()
    stats = summary_stats(array)
    sampled = array.nbytes > max_bytes
    stored = array
    if sampled:
        step = int(np.ceil(array.nbytes / max_bytes))
        stored = array.reshape(-1)[::step].copy()
    return {
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "data": stored.tobytes(),
        "sampled": sampled,
        "digest": digest,
        **stats,
    }


def decode(row: dict[str, Any]) -> np.ndarray:
    """The array a tensors row holds (flat if the row was sampled)."""
    dtype = dtype_of(row["dtype"])
    array = np.frombuffer(row["data"], dtype=dtype)
    return array if row.get("sampled") else array.reshape(row["shape"])


def dtype_of(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def summary_stats(array: np.ndarray) -> dict[str, Any]:
    if array.size == 0 or array.dtype.kind not in "biuf" and str(array.dtype) != "bfloat16":
        return {"min": None, "max": None, "mean": None, "nan_count": 0, "inf_count": 0}
    values = array.astype(np.float64)
    finite = np.isfinite(values)
    with np.errstate(all="ignore"):
        return _stats(values, finite)


def _stats(values: np.ndarray, finite: np.ndarray) -> dict[str, Any]:
    good = values[finite]
    return {
        "min": float(good.min()) if good.size else None,
        "max": float(good.max()) if good.size else None,
        "mean": float(good.mean()) if good.size else None,
        "nan_count": int(np.isnan(values).sum()),
        "inf_count": int(np.isinf(values).sum()),
    }


def write_atomic(df: Any, path: Path) -> None:
    """Write parquet through a temporary file and rename, so readers never see half a file; a failed write
    (a full disk) leaves no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with removed_on_failure(temporary):
        df.write_parquet(temporary)
        os.replace(temporary, path)


class removed_on_failure:
    """Delete ``path`` if the block raises (the temporary file of an atomic write)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is not None:
            try:
                self.path.unlink()
            except OSError:
                pass


def write_part(run_dir: Path, table: str, key: str, rows: list[dict[str, Any]]) -> Path:
    path = run_dir / "parts" / table / f"{key}.parquet"
    write_atomic(frame(table, rows), path)
    return path


class PartManifest:
    """Which case wrote which part files, with their digests (``parts/manifest.jsonl``, appended by the parent).

    A case runs in a worker that can reach the run directory: one that deletes or rewrites another case's part
    files would make that case vanish from the tables. At the end of the run every expected case is checked
    against the manifest; a missing or altered part is recorded as a lost result (a failing verdict naming what
    happened), never silently dropped.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / "parts" / "manifest.jsonl"
        self.entries: dict[str, dict[str, str]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry
                except (ValueError, KeyError):
                    continue

    def keys(self) -> set[str]:
        return set(self.entries)

    def write(
        self,
        key: str,
        case_id: str,
        case: dict[str, Any],
        tensors: list[dict[str, Any]],
        sources: dict[str, Any] | None = None,
    ) -> None:
        """The case's tensors part, then its cases part (its presence marks the case done), then the entry.
        ``sources``: digests of the code the case came from (``--resume`` reruns it when they change)."""
        tensors_path = write_part(self.run_dir, "tensors", key, tensors)
        cases_path = write_part(self.run_dir, "cases", key, [case])
        entry = {"key": key, "case": case_id, "tensors": _file_digest(tensors_path), "cases": _file_digest(cases_path)}
        if sources is not None:
            entry["sources"] = sources
        self.entries[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")

    def verify(self, expected: dict[str, Any]) -> list[tuple[str, str, str]]:
        """Check every expected case's parts (``expected``: part key -> the case's ``CaseRef``); replace what is
        missing or altered by a row saying so. Returns (key, case id, what happened) for each lost case."""
        lost = []
        for key, ref in expected.items():
            case_id = ref.id
            entry = self.entries.get(key)
            if entry is None:
                reason = "no result was recorded for it"
            else:
                reason = self._problem(key, entry)
            if reason is None:
                continue
            lost.append((key, case_id, reason))
            row = {
                "case": case_id,
                "suite": ref.suite,
                "name": ref.name,
                "path": ref.path,
                "status": "error",
                "stage": "harness",
                "message": f"the case's results were lost after it ran: {reason}. Another case may have deleted "
                "or rewritten files in the run directory; rerun this case",
            }
            runs = self.run_dir / "runs.parquet"
            if runs.exists():
                row["run"] = read_table(self.run_dir, "runs")["run"][0]
            write_part(self.run_dir, "tensors", key, [])
            write_part(self.run_dir, "cases", key, [row])
        return lost

    def _problem(self, key: str, entry: dict[str, str]) -> str | None:
        for table in ("tensors", "cases"):
            path = self.run_dir / "parts" / table / f"{key}.parquet"
            if not path.exists():
                return f"its {table} part file {path.name} was deleted"
            if _file_digest(path) != entry.get(table):
                return f"its {table} part file {path.name} was altered (its digest no longer matches)"
        return None


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def part_keys(run_dir: Path, table: str) -> set[str]:
    folder = run_dir / "parts" / table
    return {p.stem for p in folder.glob("*.parquet")} if folder.exists() else set()


def consolidate(run_dir: Path, table: str, keys: Iterable[str] | None = None) -> None:
    """Concatenate the table's parts into ``<table>.parquet``, streaming: memory stays near one part's size.
    With ``keys``, only those cases' parts (files a case planted in the folder are not results)."""
    import polars as pl

    folder = run_dir / "parts" / table
    if keys is None:
        parts = sorted(folder.glob("*.parquet"))
    else:
        parts = sorted(path for path in (folder / f"{key}.parquet" for key in keys) if path.exists())
    for part in parts:
        _check_readable(part)
    target = run_dir / f"{table}.parquet"
    if not parts:
        write_atomic(frame(table, []), target)
        return
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with removed_on_failure(temporary):
        pl.scan_parquet(parts).sink_parquet(temporary)
        os.replace(temporary, target)


def case_part(run_dir: Path, table: str, key: str):
    """One case's rows of a table from its part file, or None when the run keeps no parts (a merged run)."""
    path = run_dir / "parts" / table / f"{key}.parquet"
    return _read(path) if path.exists() else None


def _check_readable(path: Path) -> None:
    import polars as pl

    try:
        pl.read_parquet_schema(path)
    except Exception as exc:
        raise RunDataError(
            f"{path}: cannot be read as a parquet table ({type(exc).__name__}: {exc}). "
            "The file is corrupt or truncated: delete it and rerun (or resume) the run."
        ) from None


def write_table(run_dir: Path, table: str, rows: list[dict[str, Any]]) -> None:
    write_atomic(frame(table, rows), run_dir / f"{table}.parquet")


def read_table(run_dir: Path, table: str, without_data: bool = False):
    """A table of a stored run, with every column of the current schema (a run made by an older difftest lacks
    the newer ones: they read as null)."""
    import polars as pl

    path = Path(run_dir) / f"{table}.parquet"
    if not path.exists():
        raise RunDataError(
            f"{path}: missing. Is {run_dir} a difftest run directory? (it needs runs, cases and tensors tables)"
        )
    types = _schema_of(path)
    present = set(types)
    declared = schema(table)
    wanted = [c for c in declared if not (without_data and c == "data")]
    absent = [c for c in REQUIRED.get(table, ()) if c not in present]
    if absent:
        raise RunDataError(
            f"{path}: column {absent[0]!r} is missing (a damaged or crafted table: a {table} table "
            f"needs {', '.join(REQUIRED[table])}); rerun the run, or restore the file"
        )
    frame = _read(path, [c for c in wanted if c in present])
    frame = _structured_as_declared(path, table, frame, types)
    if table == "tensors" and "full" not in present and "message" in frame.columns:
        frame = _tensor_messages_split(frame)
    types = dict(frame.schema)  # the structured columns (and an old tensors table's split ones) as declared now
    present = set(types)
    for name in [c for c in wanted if c in present and types[c] != declared[c]]:
        try:  # an older run's compatible type (all-null columns, integers for floats) reads as the schema's
            if not _compatible(types[name], declared[name]):
                raise TypeError(name)
            frame = frame.with_columns(pl.col(name).cast(declared[name], strict=True))
        except Exception:
            raise RunDataError(
                f"{path}: column {name!r} holds {types[name]}, not {declared[name]} (a damaged or "
                "crafted table); rerun the run, or restore the file"
            ) from None
    for name in REQUIRED.get(table, ()):
        if name in frame.columns and frame[name].null_count():
            row = frame[name].is_null().arg_true()[0]
            raise RunDataError(
                f"{path}: column {name!r} is empty in row {row} (a damaged or crafted table); rerun "
                "the run, or restore the file"
            )
    for name in JSON_COLUMNS.get(table, ()):
        if name in frame.columns:
            for row, text in enumerate(frame[name].to_list()):
                if text is not None and _json_object(text) is None:
                    raise RunDataError(
                        f"{path}: column {name!r} in row {row} is not the JSON object difftest wrote "
                        "(a damaged or crafted table); rerun the run, or restore the file"
                    )
    if table == "runs" and frame.height != 1:
        raise RunDataError(
            f"{path}: holds {frame.height} rows; a run's runs table holds exactly one (a damaged or crafted table)"
        )
    missing = [c for c in wanted if c not in present]
    if missing:
        frame = frame.with_columns([pl.lit(None, dtype=declared[c]).alias(c) for c in missing])
    return frame.select(wanted)


def _compatible(stored: Any, wanted: Any) -> bool:
    """Whether a stored column's type reads as the schema's without changing what it says: nulls, one number
    type for another, lists of those. Text for a number (or a number for text) is a damaged table."""
    import polars as pl

    if stored == pl.Null:
        return True
    if stored.is_numeric() and wanted.is_numeric():
        return True
    if isinstance(stored, pl.List) and isinstance(wanted, pl.List):
        return _compatible(stored.inner, wanted.inner)
    return False


# Text columns that hold JSON objects: the run's configuration as given (``runs.config``, also ``config.json``) and
# a pseudo-backend's description of its values (``tensors.about``, one record per pseudo-backend).
JSON_COLUMNS = {"runs": ("config",), "tensors": ("about",)}


def _json_object(text: str | None) -> dict[str, Any] | None:
    if not text or not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _structured_as_declared(path: Path, table: str, frame: Any, types: dict[str, Any]) -> Any:
    """The table's structured columns (``columns.STRUCTURED``) in their declared types. A run made before they were
    structured holds JSON text there (the old layout): it is parsed into the declared type. A struct with other
    fields (another difftest's) reads with the fields declared now."""
    import polars as pl

    for name, kind in STRUCTURED.get(table, {}).items():
        if name not in frame.columns or types[name] == kind.dtype():
            continue
        values = frame[name].to_list()
        try:
            if types[name] in (pl.String, pl.Null):
                stored = [from_json_text(table, name, v) for v in values]
            else:
                stored = [encode_column(table, name, decode_column(table, name, v), strict=False) for v in values]
            frame = frame.with_columns(pl.Series(name, stored, dtype=kind.dtype()))
        except (ColumnValueError, TypeError, AttributeError, KeyError) as exc:
            raise RunDataError(
                f"{path}: column {name!r} does not hold what difftest wrote ({exc}; a damaged or crafted table); "
                "rerun the run, or restore the file"
            ) from None
    return frame


def _tensor_messages_split(frame: Any) -> Any:
    """The old layout of the tensors table: an ``ok`` row's ``message`` held JSON, the worker's full comparison
    (``{"full": ...}``) or a pseudo-backend's description; now ``full``, ``about`` and ``message`` (why a row
    failed) are separate columns."""
    import polars as pl

    messages, fulls, abouts = [], [], []
    for status, text in zip(frame["status"].to_list(), frame["message"].to_list()):
        value = _json_object(text) if status == "ok" else None
        full = value.get("full") if value is not None else None
        messages.append(text if value is None else None)
        fulls.append(encode_column("tensors", "full", full, strict=False) if full is not None else None)
        abouts.append(text if value is not None and full is None else None)
    return frame.with_columns(
        pl.Series("message", messages, dtype=pl.String),
        pl.Series("full", fulls, dtype=schema("tensors")["full"]),
        pl.Series("about", abouts, dtype=pl.String),
    )


# Columns a stored table cannot do without (others read as null when an older run lacks them).
REQUIRED = {
    "runs": ("run", "backends_requested", "reference"),
    "cases": ("case", "status"),
    "tensors": ("case", "backend", "probe", "status"),
    "comparisons": ("case", "candidate", "label", "passed"),
}


def _schema_of(path: Path) -> dict[str, Any]:
    import polars as pl

    try:
        return dict(pl.read_parquet_schema(path))
    except Exception as exc:
        raise RunDataError(
            f"{path}: cannot be read as a parquet table ({type(exc).__name__}: {exc}). "
            "The file is corrupt or truncated: delete it and rerun (or resume) the run."
        ) from None


def _read(path: Path, columns: list[str] | None = None):
    import polars as pl

    try:
        return pl.read_parquet(path, columns=columns)
    except Exception as exc:
        raise RunDataError(
            f"{path}: cannot be read as a parquet table ({type(exc).__name__}: {exc}). "
            "The file is corrupt or truncated: delete it and rerun (or resume) the run."
        ) from None


def run_artifact(run_dir: Path, recorded: str | None) -> Path | None:
    """The file a table row names, inside the run folder, or None. Paths are stored relative to the run folder;
    an absolute path (an older run, or a crafted table) is looked up by its name in the run's ``onnx/`` folder,
    and nothing outside the run folder is ever read."""
    if not recorded:
        return None
    root = Path(run_dir).resolve()
    candidate = Path(recorded)
    if candidate.is_absolute():
        candidate = root / "onnx" / candidate.name
    resolved = (root / candidate).resolve()
    if root not in resolved.parents or not resolved.is_file():
        return None
    return resolved


def links_out(root: Path) -> list[tuple[Path, str]]:
    """Symbolic links inside a run folder (at any depth, never followed) whose target is outside it, or dangling:
    (the link, where it points). Writing or copying through one would reach a file outside the run folder."""
    base = Path(root).resolve()
    found = []
    for folder, dirs, files in os.walk(base, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            target = os.readlink(path)
            resolved = (path.parent / target).resolve()
            if not resolved.exists() or (resolved != base and base not in resolved.parents):
                found.append((path, target))
    return found


def drop_links_out(root: Path) -> list[tuple[Path, str]]:
    """Remove the links :func:`links_out` finds (the links themselves, never their targets), so that what difftest
    writes into the run folder afterwards lands in the folder; returns what was removed."""
    removed = []
    for path, target in links_out(root):
        try:
            path.unlink()
        except OSError:
            continue
        removed.append((path, target))
    return removed
