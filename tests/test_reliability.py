"""Fault injection with real processes: crashes, hangs, runaway memory, kill -9 and resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from difftest.cli import main

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def faults_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "run"
    code = main(
        [
            "run",
            str(DATA / "faults_suite.py"),
            "--backends",
            "torch,ort-cpu",
            "--out",
            str(out),
            "--timeout",
            "10",
            "--memory-limit",
            "3000",
            "--jobs",
            "2",
            "--probes",
            "base",
            "--no-oracle",
            "--reruns",
            "0",
        ]
    )
    comparisons = pl.read_parquet(out / "comparisons.parquet")
    return code, out, {r["case"].split("::", 1)[1]: r for r in comparisons.to_dicts()}


def test_run_survives_and_reports_failures(faults_run):
    code, out, _ = faults_run
    assert code == 1
    assert (out / "index.html").exists() and (out / "junit.xml").exists()


def test_segfault_during_export_is_a_crash_with_signal_and_stage(faults_run):
    row = faults_run[2]["segfault_in_export"]
    assert row["label"] == "crash" and row["stage"].startswith("export"), row["stage"]  # where it died: a column
    assert "SIGSEGV" in row["evidence"]  # and how, in words


def test_segfault_during_run_is_a_crash(faults_run):
    row = faults_run[2]["segfault_in_run"]
    assert row["label"] == "crash" and row["stage"].startswith("run (torch"), row["stage"]
    assert "SIGSEGV" in row["evidence"]


def test_hang_is_a_timeout(faults_run):
    row = faults_run[2]["sleeps_past_timeout"]
    assert row["label"] == "timeout" and "10 s" in row["evidence"]


def test_runaway_allocation_is_a_verdict(faults_run):
    row = faults_run[2]["allocates_without_bound"]
    assert row["label"] in ("runtime_error", "crash")
    assert "memory" in row["evidence"].lower() or "alloc" in row["evidence"].lower()


def test_other_cases_are_intact(faults_run):
    rows = faults_run[2]
    assert rows["still_fine"]["label"] == "exact"
    assert rows["html_<script>alert(1)</script>"]["label"] == "exact"


def test_hostile_case_name_is_escaped_everywhere(faults_run):
    _, out, _ = faults_run
    for page in [out / "index.html", *(out / "cases").glob("*.html")]:
        assert "<script>alert(1)</script>" not in page.read_text()
    assert "html_&lt;script&gt;" in (out / "index.html").read_text()


def test_worker_output_is_kept_per_case(faults_run):
    _, out, _ = faults_run
    cases = {c["name"]: c for c in pl.read_parquet(out / "cases.parquet").to_dicts()}
    assert (out / cases["still_fine"]["log"]).exists()


def _comparable(run_dir: Path) -> list[dict]:
    df = pl.read_parquet(run_dir / "comparisons.parquet").drop("run").sort(["case", "probe", "output", "candidate"])
    return df.to_dicts()


def _digests(run_dir: Path) -> list[tuple]:
    df = pl.read_parquet(run_dir / "tensors.parquet")
    return sorted(
        zip(df["case"], df["probe"], df["backend"], df["output"].fill_null(""), df["rerun"], df["digest"].fill_null(""))
    )


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    args = [
        str(DATA / "slow_suite.py"),
        "--backends",
        "torch,ort-cpu",
        "--jobs",
        "1",
        "--probes",
        "base,alt",
        "--reruns",
        "0",
    ]
    whole = tmp_path / "whole"
    assert main(["run", *args, "--out", str(whole)]) == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "difftest", "run", *args, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    parts = killed / "parts" / "cases"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(parts.glob("*.parquet")) if parts.exists() else []) < 2:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = len(list(parts.glob("*.parquet")))
    assert 2 <= done < 4, f"expected a run killed half way, {done} of 4 cases were done"
    assert not (killed / "comparisons.parquet").exists()

    assert main(["run", *args, "--out", str(killed), "--resume"]) == 0
    assert _comparable(killed) == _comparable(whole)
    assert _digests(killed) == _digests(whole)  # same tensors: the run is deterministic


def test_corrupt_table_gives_a_clear_error(tmp_path, capsys, data_dir):
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(data_dir / "passing_suite.py"),
                "--backends",
                "torch,ort-cpu",
                "--out",
                str(out),
                "--probes",
                "base",
            ]
        )
        == 0
    )
    table = out / "tensors.parquet"
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    assert main(["report", str(out), "--rejudge"]) == 2
    err = capsys.readouterr().err
    assert "tensors.parquet" in err and "corrupt or truncated" in err and "Traceback" not in err


def test_resume_needs_a_run(tmp_path, capsys, data_dir):
    assert main(["run", str(data_dir / "passing_suite.py"), "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err


def test_unwritable_output_directory(tmp_path, capsys, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # works for root too, unlike permission bits
    assert main(["run", str(data_dir / "passing_suite.py"), "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the run directory" in err and "Traceback" not in err


def test_suite_that_segfaults_at_import_is_a_usage_error(capsys):
    assert main(["run", str(DATA / "segv_at_import_suite.py"), "--backends", "torch,ort-cpu"]) == 2
    err = capsys.readouterr().err
    assert "importing the suites killed the worker process" in err and "SIGSEGV" in err
