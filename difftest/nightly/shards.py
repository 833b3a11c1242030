"""Split a suite over machines (``--shard K/N``) and merge the shard runs back into one run.

The split is stable across runs and machines: cases are ordered by (expected duration, id) and dealt,
longest first, to the shard with the least work so far. Durations come from a previous run when one is
given (``--durations DIR``), otherwise every case counts the same (a round robin over the sorted ids).
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from ..errors import RunDataError, UsageError


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, total = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: write K/N, e.g. --shard 2/4") from None
    if not 1 <= index <= total:
        raise UsageError(f"--shard {text!r}: K must be between 1 and N")
    return index, total


def durations_from(run_dir: Path | None) -> dict[str, float]:
    if run_dir is None:
        return {}
    from ..record.tables import read_table

    return {row["case"]: row["seconds"] or 0.0 for row in read_table(run_dir, "cases").to_dicts()}


def select(case_ids: list[str], index: int, total: int, durations: dict[str, float] | None = None) -> set[str]:
    """The case ids of shard ``index`` (1-based) of ``total``."""
    durations = durations or {}
    known = [durations[c] for c in case_ids if c in durations]
    default = statistics.median(known) if known else 1.0
    weight = {c: durations.get(c, default) for c in case_ids}
    loads = [0.0] * total
    chosen: set[str] = set()
    for case_id in sorted(case_ids, key=lambda c: (-weight[c], c)):
        target = min(range(total), key=lambda i: (loads[i], i))
        loads[target] += weight[case_id] or 1e-9
        if target == index - 1:
            chosen.add(case_id)
    return chosen


# Settings every shard of one run must share: judging them together is only right if each was run alike.
MERGE_SETTINGS = ("backends", "exporter", "probes", "reruns", "oracle", "keyword", "localize_budget", "control_budget")


def merge(run_dirs: list[Path], out: Path) -> Path:
    """Concatenate shard runs into one run directory (tables, logs, exported models); judged and rendered after.
    A merge that fails leaves no partial folder behind."""
    if len(run_dirs) < 2:
        raise UsageError("merge needs at least two run directories")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; merge writes a new run directory")
    created = not out.exists()
    try:
        return _merge(run_dirs, out)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        elif out.exists():
            for child in list(out.iterdir()):
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise


def check_same_settings(run_dirs: list[Path], runs: list[dict[str, Any]]) -> None:
    """Refuse shards that were run with different settings, naming the setting and each shard's value."""
    configs = []
    for row in runs:
        try:
            configs.append(json.loads(row.get("config") or "{}"))
        except ValueError:
            configs.append({})
    for name in MERGE_SETTINGS:
        values = [c.get(name) for c in configs]
        if any(v != values[0] for v in values[1:]):
            shown = "; ".join(f"{d}: {v!r}" for d, v in zip(run_dirs, values))
            raise UsageError(
                f"the shards were run with different {name} ({shown}); a merged run would judge them "
                "as one, so run every shard with the same settings"
            )
    if len({r.get("oracle") for r in runs}) > 1:
        raise UsageError(
            "the shards differ in whether the float64 oracle ran: "
            + "; ".join(f"{d}: {r.get('oracle') or 'off'}" for d, r in zip(run_dirs, runs))
        )


def _merge(run_dirs: list[Path], out: Path) -> Path:
    import polars as pl

    from ..record.tables import frame, links_out, read_table, row_dicts, write_atomic

    for run_dir in run_dirs:
        escaping = {link.name for link, _ in links_out(run_dir) if link.parent == run_dir.resolve()}
        for table in ("runs", "cases", "tensors"):
            if f"{table}.parquet" in escaping:
                raise RunDataError(
                    f"{run_dir / f'{table}.parquet'} is a symbolic link out of the run folder: merge "
                    "never copies what a link points to"
                )
    runs = [row_dicts(read_table(d, "runs"), "runs")[0] for d in run_dirs]
    if len({tuple(r["backends_requested"]) for r in runs}) > 1:
        raise UsageError(
            "the runs used different backends: "
            + "; ".join(f"{d}: {','.join(r['backends_requested'])}" for d, r in zip(run_dirs, runs))
        )
    check_same_settings(run_dirs, runs)
    shards = shard_status(run_dirs, runs)
    seen: dict[str, Path] = {}
    frames: dict[str, list[Any]] = {"cases": [], "tensors": []}
    merged_id = runs[0]["run"] + "-merged"
    out.mkdir(parents=True, exist_ok=True)
    for run_dir in run_dirs:
        cases = read_table(run_dir, "cases")
        for case_id in cases["case"].to_list():
            if case_id in seen:
                raise UsageError(f"case {case_id} is in both {seen[case_id]} and {run_dir}: shards must not overlap")
            seen[case_id] = run_dir
        for folder in ("logs", "onnx"):
            copy_files(run_dir, folder, out)
        frames["cases"].append(_relocate(cases, run_dir, out).with_columns(pl.lit(merged_id).alias("run")))
        frames["tensors"].append(read_table(run_dir, "tensors").with_columns(pl.lit(merged_id).alias("run")))
    not_run = [{**row, "run": merged_id} for row in shards["rows"] if row["case"] not in seen]
    if not_run:  # what a missing or stopped shard did not run: failing rows, in the report, JUnit and summary
        frames["cases"].append(frame("cases", not_run).select(frames["cases"][0].columns))
    for table, parts in frames.items():
        write_atomic(pl.concat(parts, how="vertical"), out / f"{table}.parquet")
    row = dict(runs[0])
    row.update(
        run=merged_id,
        started=min(r["started"] for r in runs),
        finished=max((r["finished"] or "") for r in runs) or None,
        seconds=max((r["seconds"] or 0.0) for r in runs),
        targets=sorted({t for r in runs for t in (r["targets"] or [])}),
        config=json.dumps(
            {
                **json.loads(runs[0].get("config") or "{}"),
                "merged_from": [str(d) for d in run_dirs],
                "shards": {k: v for k, v in shards.items() if k != "rows"},
            }
        ),
        phase_seconds=None,
    )
    from ..record.tables import write_table

    write_table(out, "runs", [row])
    for name in ("waivers.json", "config.json"):
        if (run_dirs[0] / name).is_file() and not (run_dirs[0] / name).is_symlink():
            shutil.copyfile(run_dirs[0] / name, out / name)
    (out / "shards.json").write_text(json.dumps({k: v for k, v in shards.items() if k != "rows"}, indent=2) + "\n")
    return out


def copy_files(run_dir: Path, folder: str, out: Path) -> list[Path]:
    """Copy a shard's ``folder`` (logs, exported models) into the merged run: regular files only. A symbolic link is
    never followed (its target may be anywhere); the links left out are returned."""
    import os

    source = run_dir / folder
    skipped: list[Path] = []
    if source.is_symlink() or not source.is_dir():
        return [source] if source.is_symlink() else []
    for here, dirs, files in os.walk(source, followlinks=False):
        relative = Path(here).relative_to(source)
        for name in list(dirs):
            if (Path(here) / name).is_symlink():
                skipped.append(Path(here) / name)
                dirs.remove(name)
        for name in files:
            path = Path(here) / name
            if path.is_symlink() or not path.is_file():
                skipped.append(path)
                continue
            target = out / folder / relative / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target, follow_symlinks=False)
    return skipped


def shard_status(run_dirs: list[Path], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Which shards of the K/N split (recorded by ``--shard``) the merge has, which are missing, and which did not
    finish (stopped by SIGTERM: no finish time; ``plan.json`` names the cases they were to run). ``rows``: a failing
    case row for each case a stopped shard did not run, and one for each missing shard."""
    totals: dict[int, list[Path]] = {}
    present: dict[int, Path] = {}
    unfinished: dict[str, list[str]] = {}
    rows: list[dict[str, Any]] = []
    for run_dir, row in zip(run_dirs, runs):
        text = row.get("shard")
        if text:
            index, total = parse_shard(text)
            totals.setdefault(total, []).append(run_dir)
            if index in present:
                raise UsageError(f"shard {text} is in both {present[index]} and {run_dir}: shards must not overlap")
            present[index] = run_dir
        if row.get("finished"):
            continue
        done = set(_case_ids(run_dir))
        planned = _planned(run_dir)
        where = f"shard {text} ({run_dir})" if text else str(run_dir)
        if planned is None:
            unfinished[str(run_dir)] = []
            rows.append(
                _not_run_row(
                    f"merge::unfinished_{_slug(text or run_dir.name)}",
                    f"{where} did not finish (it was stopped) and records no plan of its cases, so "
                    "those it did not run cannot be named; finish it with `difftest run ... --out "
                    f"{run_dir} --resume`, then merge again",
                )
            )
            continue
        left = [case_id for case_id in planned if case_id not in done]
        if left:
            unfinished[str(run_dir)] = left
        for case_id in left:
            rows.append(
                _not_run_row(
                    case_id,
                    f"not run: {where} was stopped before this case finished; finish it "
                    f"with `difftest run ... --out {run_dir} --resume`, then merge again",
                )
            )
    if len(totals) > 1:
        raise UsageError(
            "the shards come from different splits: "
            + "; ".join(f"of {n}: {', '.join(map(str, dirs))}" for n, dirs in sorted(totals.items()))
        )
    total = next(iter(totals), None)
    missing = sorted(set(range(1, total + 1)) - set(present)) if total else []
    for index in missing:
        rows.append(
            _not_run_row(
                f"merge::shard_{index}_of_{total}_missing",
                f"shard {index}/{total} is missing from the merge: its cases were not run, or its run "
                f"folder was not given (merged: {', '.join(f'{k}/{total}' for k in sorted(present))})",
            )
        )
    return {"total": total, "merged": sorted(present), "missing": missing, "unfinished": unfinished, "rows": rows}


def _not_run_row(case_id: str, message: str) -> dict[str, Any]:
    suite, _, name = case_id.partition("::")
    return {
        "case": case_id,
        "suite": suite,
        "name": name,
        "status": "error",
        "stage": "harness",
        "message": message,
        "seconds": 0.0,
        "tags": [],
    }


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")


def _case_ids(run_dir: Path) -> list[str]:
    from ..record.tables import read_table

    return read_table(run_dir, "cases")["case"].to_list()


def _planned(run_dir: Path) -> list[str] | None:
    path = run_dir / "plan.json"
    if path.is_symlink() or not path.is_file():
        return None
    try:
        cases = json.loads(path.read_text()).get("cases")
    except (OSError, ValueError, AttributeError):
        return None
    return [c for c in cases if isinstance(c, str)] if isinstance(cases, list) else None


def incomplete(run_dir: Path) -> str | None:
    """What a merged run lacks (missing or unfinished shards), said in one line; None when nothing."""
    path = run_dir / "shards.json"
    if not path.is_file():
        return None
    status = json.loads(path.read_text())
    parts = []
    if status.get("missing"):
        parts.append("missing shard(s) " + ", ".join(f"{k}/{status['total']}" for k in status["missing"]))
    for folder, left in (status.get("unfinished") or {}).items():
        parts.append(f"unfinished shard {folder}" + (f" ({len(left)} case(s) not run)" if left else ""))
    return "; ".join(parts) or None


def _relocate(cases: Any, source: Path, target: Path) -> Any:
    """Exported-model paths relative to the merged run (older runs stored absolute paths)."""
    from ..record.tables import frame, row_dicts

    def relative(path: str | None) -> str | None:
        return f"onnx/{Path(path).name}" if path else path

    rows = row_dicts(cases, "cases")
    for row in rows:
        row["onnx_path"] = relative(row.get("onnx_path"))
        for info in (row.get("exports") or {}).values():
            info["onnx_path"] = relative(info.get("onnx_path"))
    return frame("cases", rows)


def check_run_dir(path: Path) -> Path:
    if not (path / "cases.parquet").exists():
        raise RunDataError(f"{path}: not a finished difftest run (no cases.parquet)")
    return path
