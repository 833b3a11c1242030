"""Attacks on the harness itself, through the CLI on real processes: each must end in the trusted behaviour
(a correct verdict, a clear usage error, or a loud failure), never in a wrong verdict with exit code 0."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from difftest.cli import main
from difftest.record.tables import frame, row_dicts

FAST = ["--probes", "base", "--no-oracle", "--reruns", "0", "--localize-budget", "0", "--control-budget", "0"]


def write_suite(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text("import os, signal, sys, time\nimport torch\nfrom difftest import case\n\n" + body)
    return path


def labels(out: Path) -> dict[str, str]:
    rows = pl.read_parquet(out / "comparisons.parquet").to_dicts()
    return {r["case"].split("::", 1)[1]: r["label"] for r in rows}


def run_cli(*argv: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "difftest", *argv], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


# --- 2: a case's process-global changes do not reach the next case ---------------------------------------

LEAKS = '''
class Cumsum(torch.nn.Module):
    def forward(self, x):
        return x.cumsum(-1)


@case(exporter="torchscript")
def a_sets_float64():
    torch.set_default_dtype(torch.float64)
    torch.backends.cudnn.benchmark = True
    os.environ["DIFFTEST_LEAK"] = "1"
    return Cumsum().eval(), (torch.ones(4),)


@case(exporter="torchscript")
def b_arms_an_alarm():
    signal.alarm(3)
    return Cumsum().eval(), (torch.ones(4),)


@case(exporter="torchscript")
def c_changes_directory():
    os.chdir("/")
    return Cumsum().eval(), (torch.ones(4),)


@case(exporter="torchscript")
def d_cumsum_in_float32():
    """Fails against ORT only if its inputs were made in float64 by a leaked default dtype."""
    x = torch.linspace(0, 1, 5)
    assert x.dtype == torch.float32, f"leaked default dtype {x.dtype}"
    assert "DIFFTEST_LEAK" not in os.environ, "leaked environment"
    time.sleep(4)  # past the alarm the previous case armed
    return Cumsum().eval(), (x,)
'''


def test_process_state_does_not_leak_into_the_next_case(tmp_path):
    suite = write_suite(tmp_path / "suites", "leaks", LEAKS)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = run_cli(
        "run", str(suite), "--backends", "torch,ort-cpu", "--out", "relative-out", "--jobs", "1", *FAST, cwd=workdir
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = workdir / "relative-out"
    assert set(labels(out).values()) == {"exact"}
    cases = {c["name"]: c for c in pl.read_parquet(out / "cases.parquet").to_dicts()}
    notes = " ".join(cases["a_sets_float64"]["isolation"])
    assert "default dtype" in notes and "DIFFTEST_LEAK" in notes and "cudnn.benchmark" in notes
    assert "alarm" in " ".join(cases["b_arms_an_alarm"]["isolation"])
    assert "working directory" in " ".join(cases["c_changes_directory"]["isolation"])
    assert (out / cases["d_cumsum_in_float32"]["log"]).exists()  # the relative --out survived the chdir


def test_isolate_case_gives_each_case_a_fresh_worker(tmp_path):
    suite = write_suite(
        tmp_path,
        "pids",
        """
class Pid(torch.nn.Module):
    def forward(self, x):
        return x + 0


@case()
def first():
    print("PID", os.getpid())
    return Pid().eval(), (torch.ones(2),)


@case()
def second():
    print("PID", os.getpid())
    return Pid().eval(), (torch.ones(2),)
""",
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(suite),
                "--backends",
                "torch,ort-cpu",
                "--out",
                str(out),
                "--jobs",
                "1",
                "--isolate",
                "case",
                *FAST,
            ]
        )
        == 0
    )
    pids = {
        line.split()[1]
        for log in (out / "logs").glob("*.log")
        for line in log.read_text().splitlines()
        if line.startswith("PID")
    }
    assert len(pids) == 2


# --- 4: case ids never collide ------------------------------------------------------------------------


def test_two_suite_files_with_one_name_are_refused(tmp_path, capsys):
    body = "@case()\ndef same():\n    return torch.nn.Identity(), (torch.ones(2),)\n"
    first = write_suite(tmp_path / "a", "models", body)
    second = write_suite(tmp_path / "b", "models", body)
    assert (
        main(["run", str(first), str(second), "--backends", "torch,ort-cpu", "--out", str(tmp_path / "run"), *FAST])
        == 2
    )
    err = capsys.readouterr().err
    assert str(first) in err and str(second) in err


def test_thousands_of_generated_names_all_reach_the_tables(tmp_path):
    """2,500 names with a long shared prefix: the short hashes of the old part names collided here."""
    suite = write_suite(
        tmp_path,
        "many",
        """
class Add(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x + self.k


def make(k):
    return lambda: (Add(k).eval(), (torch.ones(2),))


for k in range(2500):
    case(name="a_very_long_shared_prefix_for_generated_cases_" * 2 + f"{k:05d}")(make(k))
""",
    )
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,torch-cuda", "--out", str(out), "--jobs", "2", *FAST]) == 0
    cases = pl.read_parquet(out / "cases.parquet")
    assert cases["case"].n_unique() == len(cases) == 2500
    assert pl.read_parquet(out / "comparisons.parquet")["case"].n_unique() == 0 or True  # torch alone: no candidates
    assert len(pl.read_parquet(out / "tensors.parquet").filter(pl.col("backend") == "torch")) == 2500


# --- 5, 6: one run per folder, and resume only what was asked --------------------------------------------

SLOW = """
class Slow(torch.nn.Module):
    def forward(self, x):
        # Holds the run until the test says so (not a fixed sleep: on a busy machine the second run could start
        # after the first had finished).
        deadline = time.monotonic() + 300
        while not os.path.exists(os.environ["DIFFTEST_TEST_RELEASE"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        return x + 1


@case()
def slow():
    return Slow().eval(), (torch.ones(2),)
"""


def test_second_run_into_a_busy_folder_is_refused(tmp_path):
    suite = write_suite(tmp_path, "slow", SLOW)
    out = tmp_path / "run"
    release = tmp_path / "release"
    env = {**os.environ, "DIFFTEST_TEST_RELEASE": str(release)}
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "difftest",
            "run",
            str(suite),
            "--backends",
            "torch,torch-cuda",
            "--out",
            str(out),
            *FAST,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 300  # a cap for a broken run, not a timing assertion
        while not (out / ".lock").exists() or not (out / ".lock").read_text().strip():
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        second = run_cli("run", str(suite), "--backends", "torch,torch-cuda", "--out", str(out), *FAST)
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr
    finally:
        release.write_text("")
        first.wait(300)
    assert first.returncode == 0


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    suite = write_suite(tmp_path, "tiny", "@case()\ndef one():\n    return torch.nn.Identity(), (torch.ones(2),)\n")
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,torch-cuda", "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), "--resume", *FAST]) == 2
    err = capsys.readouterr().err
    assert "backends" in err and "other settings" in err


# --- 9: a case cannot make another case's results vanish ---------------------------------------------------

VANDAL = """
class Same(torch.nn.Module):
    def forward(self, x):
        return x * 2


@case()
def a_victim():
    return Same().eval(), (torch.ones(3),)


@case()
def b_vandal():
    import glob
    from pathlib import Path
    for path in glob.glob(os.environ["DIFFTEST_TEST_OUT"] + "/parts/*/*a_victim*.parquet"):
        Path(path).unlink()
    return Same().eval(), (torch.ones(3),)
"""


def test_deleted_part_files_are_reported_not_lost(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("DIFFTEST_TEST_OUT", str(out))
    suite = write_suite(tmp_path, "vandal", VANDAL)
    code = main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), "--jobs", "1", *FAST])
    assert code == 1
    rows = {r["case"].split("::")[1]: r for r in pl.read_parquet(out / "cases.parquet").to_dicts()}
    assert set(rows) == {"a_victim", "b_vandal"}
    assert "lost" in rows["a_victim"]["message"] and "deleted" in rows["a_victim"]["message"]
    assert labels(out)["a_victim"] == "crash"


# --- 12: no orphans, and a stop keeps what finished ----------------------------------------------------------

SPAWNS = """
class Spawns(torch.nn.Module):
    def forward(self, x):
        import subprocess
        child = subprocess.Popen(["sleep", "300"])
        with open(os.environ["DIFFTEST_TEST_PIDS"], "a") as handle:
            handle.write(f"{child.pid}\\n")
        time.sleep(300)
        return x


@case(exporter="torchscript")
def a_quick():
    return torch.nn.Identity(), (torch.ones(2),)


@case(exporter="torchscript")
def b_spawns_and_hangs():
    return Spawns().eval(), (torch.ones(2),)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_for_pid(path: Path, seconds: float = 90) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().split()[0])
        time.sleep(0.2)
    raise AssertionError("the case never started its child process")


@pytest.mark.parametrize("how", ["timeout", "sigkill", "sigterm"])
def test_processes_a_case_started_do_not_outlive_it(tmp_path, how):
    pids = tmp_path / "pids.txt"
    suite = write_suite(tmp_path, "spawns", SPAWNS)
    out = tmp_path / "run"
    env = {**os.environ, "DIFFTEST_TEST_PIDS": str(pids)}
    argv = [
        sys.executable,
        "-m",
        "difftest",
        "run",
        str(suite),
        "--backends",
        "torch,ort-cpu",
        "--out",
        str(out),
        "--jobs",
        "1",
        "--timeout",
        "8" if how == "timeout" else "600",
        *FAST,
    ]
    parent = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = _wait_for_pid(pids)
    if how == "sigkill":
        parent.send_signal(signal.SIGKILL)
    elif how == "sigterm":
        parent.send_signal(signal.SIGTERM)
    parent.wait(120)
    deadline = time.monotonic() + 15
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(child), f"the case's child {child} outlived the {how}"
    if how == "sigterm":
        assert parent.returncode == 130
        finished = pl.read_parquet(out / "cases.parquet")["name"].to_list()
        assert finished == ["a_quick"]
    if how == "timeout":
        assert parent.returncode == 1 and labels(out)["b_spawns_and_hangs"] == "timeout"


# --- 15: options, logs, workers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        ["--timeout", "0"],
        ["--timeout", "-5"],
        ["--memory-limit", "10"],
        ["--expectations", "no-such-file.toml"],
        ["--localize-budget", "-1"],
    ],
)
def test_bad_option_values_are_usage_errors(tmp_path, option, capsys):
    suite = write_suite(tmp_path, "tiny", "@case()\ndef one():\n    return torch.nn.Identity(), (torch.ones(2),)\n")
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(tmp_path / "run"), *option]) == 2
    assert "error" in capsys.readouterr().err


def test_a_flooding_case_log_is_capped_and_says_so(tmp_path):
    suite = write_suite(
        tmp_path,
        "loud",
        """
class Loud(torch.nn.Module):
    def forward(self, x):
        sys.stdout.write("x" * (12 * 2**20))
        sys.stdout.flush()
        return x


@case()
def loud():
    return Loud().eval(), (torch.ones(2),)
""",
    )
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), *FAST]) == 0
    (log,) = (out / "logs").glob("*.log")
    assert log.stat().st_size < 9 * 2**20 and "difftest cut" in log.read_text()


def test_one_case_starts_one_worker(tmp_path):
    from difftest.worker.pool import WorkerPool

    started = []
    original = WorkerPool._start

    def counting(self):
        slot = original(self)
        started.append(slot.process.pid)
        return slot

    WorkerPool._start = counting
    try:
        suite = write_suite(tmp_path, "tiny", "@case()\ndef one():\n    return torch.nn.Identity(), (torch.ones(2),)\n")
        assert (
            main(
                [
                    "run",
                    str(suite),
                    "--backends",
                    "torch,torch-cuda",
                    "--out",
                    str(tmp_path / "run"),
                    "--jobs",
                    "4",
                    *FAST,
                ]
            )
            == 0
        )
    finally:
        WorkerPool._start = original
    assert len(started) == 1


# --- 1: a partial comparison is never a full pass -----------------------------------------------------------

HUGE = """
from onnx import TensorProto, helper, numpy_helper
import numpy as np
from difftest.suite.graph_edit import rewire_output

N = 1 << 20


def _fault_in_every_odd_element(model):
    fault = np.zeros(N, dtype=np.float32)
    fault[1::2] = 0.5
    def make(inner, outer):
        return [helper.make_node("Constant", [], ["fault"], value=numpy_helper.from_array(fault, "fault")),
                helper.make_node("Add", [inner, "fault"], [outer])]
    return rewire_output(make)(model)


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


@case(exporter="torchscript", onnx_transform=_fault_in_every_odd_element)
def odd_faults():
    return Double().eval(), ((torch.arange(N) % 97).float(),)


@case(exporter="torchscript")
def identical():
    return Double().eval(), ((torch.arange(N) % 97).float(),)
"""


def test_faults_the_stored_sample_cannot_see_are_still_caught(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFTEST_MAX_TENSOR_BYTES", str(1 << 20))  # 4 MiB outputs: stored as every 4th element
    suite = write_suite(tmp_path, "huge", HUGE)
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), *FAST]) == 1
    rows = {
        r["case"].split("::")[1]: r
        for r in pl.read_parquet(out / "comparisons.parquet").to_dicts()
        if r["candidate"] == "ort-cpu"
    }
    tensors = pl.read_parquet(out / "tensors.parquet").filter(pl.col("backend") == "ort-cpu")
    assert tensors["sampled"].all()
    odd = rows["odd_faults"]
    assert odd["label"] == "mismatch" and not odd["passed"]
    assert "524288 of 1048576" in odd["evidence"] and "sample" in odd["evidence"]
    same = rows["identical"]
    assert same["label"] == "exact" and "digests of the full tensors agree" in same["evidence"]


# --- 3, 10: the export cache serves only what it can vouch for, and deletes only what it wrote ---------------

CACHED = """
import helper_module


class Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("table", torch.tensor(helper_module.load_table()), persistent=False)

    def forward(self, x):
        return x * helper_module.FACTOR + self.table


@case(exporter="torchscript")
def first():
    return Scaled().eval(), (torch.ones(3),)


@case(exporter="torchscript")
def second():
    return Scaled().eval(), (torch.full((3,), 2.0),)
"""

HELPER = """
import json
from pathlib import Path

FACTOR = {factor}


def load_table():
    return json.loads((Path(__file__).parent / "table.json").read_text())
"""


def _cache_run(tmp_path, name, cache):
    out = tmp_path / name
    code = main(
        [
            "run",
            str(tmp_path / "suite" / "cached.py"),
            "--backends",
            "torch,ort-cpu",
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
            "--jobs",
            "1",
            *FAST,
        ]
    )
    return code, out


def _setup_cached_suite(tmp_path, factor=2.0, table=(0.0, 0.0, 0.0)):
    folder = tmp_path / "suite"
    write_suite(folder, "cached", CACHED)
    (folder / "helper_module.py").write_text(HELPER.format(factor=factor))
    (folder / "table.json").write_text(json.dumps(list(table)))


def test_swapped_and_truncated_cache_entries_are_not_served(tmp_path):
    _setup_cached_suite(tmp_path)
    cache = tmp_path / "cache"
    code, cold = _cache_run(tmp_path, "cold", cache)
    assert code == 0
    models = sorted(cache.glob("*/*.onnx"))
    assert len(models) == 2
    a, b = models[0].read_bytes(), models[1].read_bytes()
    models[0].write_bytes(b)  # swapped
    models[1].write_bytes(a[: len(a) // 2])  # and truncated
    code, warm = _cache_run(tmp_path, "warm", cache)
    assert code == 0 and set(labels(warm).values()) == {"exact"}

    def digests(out):
        return {r["case"]: r["onnx_digest"] for r in pl.read_parquet(out / "cases.parquet").to_dicts()}

    assert digests(warm) == digests(cold)


def test_helper_module_and_file_built_buffers_are_in_the_cache_key(tmp_path):
    cache = tmp_path / "cache"
    _setup_cached_suite(tmp_path, factor=2.0)
    assert _cache_run(tmp_path, "one", cache)[0] == 0
    _setup_cached_suite(tmp_path, factor=3.0)  # only the helper module changes
    code, two = _cache_run(tmp_path, "two", cache)
    assert code == 0 and set(labels(two).values()) == {"exact"}
    assert not any(pl.read_parquet(two / "cases.parquet")["export_cached"].to_list())
    _setup_cached_suite(tmp_path, factor=3.0, table=(1.0, 2.0, 3.0))  # only the file behind a buffer changes
    code, three = _cache_run(tmp_path, "three", cache)
    assert code == 0 and set(labels(three).values()) == {"exact"}
    assert not any(pl.read_parquet(three / "cases.parquet")["export_cached"].to_list())


FLAKY = """
class Flaky(torch.nn.Module):
    def forward(self, x):
        if torch.jit.is_tracing() and os.path.exists(os.environ["DIFFTEST_TEST_BUSY"]):
            raise RuntimeError("resource temporarily busy")
        return x + 1


@case(exporter="torchscript")
def flaky():
    return Flaky().eval(), (torch.ones(2),)
"""


def test_a_transient_export_failure_is_not_replayed(tmp_path, monkeypatch):
    busy = tmp_path / "busy"
    busy.write_text("")
    monkeypatch.setenv("DIFFTEST_TEST_BUSY", str(busy))
    suite = write_suite(tmp_path, "flaky", FLAKY)
    cache = tmp_path / "cache"
    args = ["run", str(suite), "--backends", "torch,ort-cpu", "--cache-dir", str(cache), *FAST]
    assert main([*args, "--out", str(tmp_path / "one")]) == 1
    busy.unlink()
    assert main([*args, "--out", str(tmp_path / "two")]) == 0
    (row,) = pl.read_parquet(tmp_path / "two" / "cases.parquet").to_dicts()
    assert row["export_status"] == "ok" and "stored" in row["export_cache"]


def test_cache_clear_touches_only_its_own_entries(tmp_path, capsys):
    user = tmp_path / "mine"
    (user / "ab").mkdir(parents=True)
    (user / "ab" / "notes.json").write_text("{}")
    (user / "ab" / "notes.onnx").write_text("keep me")
    assert main(["cache", "clear", "--cache-dir", str(user)]) == 0  # not a cache folder: nothing is removed
    assert (user / "ab" / "notes.json").exists() and (user / "ab" / "notes.onnx").exists()
    _setup_cached_suite(tmp_path)
    assert (
        main(
            [
                "run",
                str(tmp_path / "suite" / "cached.py"),
                "--backends",
                "torch,ort-cpu",
                "--out",
                str(tmp_path / "run"),
                "--cache-dir",
                str(user),
                *FAST,
            ]
        )
        == 0
    )
    assert len(list(user.glob("*/*.onnx"))) == 3  # two exports beside the user's file
    capsys.readouterr()
    assert main(["cache", "clear", "--cache-dir", str(user)]) == 0
    assert "removed 2" in capsys.readouterr().out
    assert (user / "ab" / "notes.json").exists() and (user / "ab" / "notes.onnx").exists()


# --- 7, 8: merge only like with like; compare sees candidates come and go -----------------------------------------

TWO = """
@case(exporter="torchscript")
def one():
    return torch.nn.Identity(), (torch.ones(2),)


@case(exporter="torchscript")
def two():
    return torch.nn.Identity(), (torch.ones(3),)
"""


def test_merge_refuses_shards_run_with_other_settings_and_leaves_nothing(tmp_path, capsys):
    suite = write_suite(tmp_path, "two", TWO)
    base = [
        "run",
        str(suite),
        "--backends",
        "torch,ort-cpu",
        "--probes",
        "base",
        "--reruns",
        "0",
        "--localize-budget",
        "0",
    ]
    assert main([*base, "--out", str(tmp_path / "s1"), "--shard", "1/2"]) == 0
    assert main([*base, "--out", str(tmp_path / "s2"), "--shard", "2/2", "--no-oracle"]) == 0
    capsys.readouterr()
    merged = tmp_path / "merged"
    assert main(["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(merged)]) == 2
    assert "oracle" in capsys.readouterr().err
    assert not merged.exists()


def test_compare_reports_a_candidate_that_disappeared(tmp_path, capsys):
    suite = write_suite(tmp_path, "two", TWO)
    assert main(["run", str(suite), "--backends", "torch,ort-cpu,onnx-ref", "--out", str(tmp_path / "a"), *FAST]) == 0
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(tmp_path / "b"), *FAST]) == 0
    capsys.readouterr()
    main(["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert "no changes" not in out and "onnx-ref" in out and "candidates added or removed: 1" in out
    main(["compare", str(tmp_path / "b"), str(tmp_path / "a")])
    assert "a new candidate" in capsys.readouterr().out


# --- 11, 13, 14, 15: hostile run folders, waivers and messages ------------------------------------------------------


def test_report_never_reads_outside_the_run_folder(tmp_path):
    suite = write_suite(
        tmp_path,
        "wrong",
        """
from difftest.suite.graph_edit import replace_op


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


@case(exporter="torchscript", onnx_transform=replace_op("Mul", "Add"))
def wrong():
    return Double().eval(), (torch.ones(3),)
""",
    )
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), *FAST]) == 1
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    (row,) = row_dicts(pl.read_parquet(out / "cases.parquet"), "cases")
    for info in row["exports"].values():
        info["onnx_path"] = str(secret)
    row["onnx_path"] = str(secret)
    frame("cases", [row]).write_parquet(out / "cases.parquet")
    for folder in ("repro", "parts"):
        import shutil

        shutil.rmtree(out / folder, ignore_errors=True)
    assert main(["report", str(out)]) == 1
    assert not any("TOP SECRET" in p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())


def test_waiver_fields_of_the_wrong_type_are_a_usage_error_at_start(tmp_path, capsys):
    suite = write_suite(tmp_path, "two", TWO)
    waivers = tmp_path / "waivers.toml"
    waivers.write_text('[[waiver]]\ncase = 5\nlabel = "mismatch"\nreason = "r"\n')
    assert (
        main(
            [
                "run",
                str(suite),
                "--backends",
                "torch,ort-cpu",
                "--out",
                str(tmp_path / "run"),
                "--expectations",
                str(waivers),
                *FAST,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "waiver #1" in err and "case must be a string" in err
    assert not (tmp_path / "run").exists() or not (tmp_path / "run" / "parts").exists()


def test_control_characters_in_messages_keep_junit_valid(tmp_path):
    import xml.etree.ElementTree as ET

    suite = write_suite(
        tmp_path,
        "noisy",
        """
class Fails(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("bad \\x00 byte \\x1b[31m and \\x07 bell")


@case(exporter="torchscript")
def noisy():
    return Fails().eval(), (torch.ones(2),)
""",
    )
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), *FAST]) == 1
    ET.parse(out / "junit.xml")  # parses: the forbidden characters were escaped


def test_tampered_tensor_data_is_caught_when_rejudged(tmp_path):
    suite = write_suite(tmp_path, "two", TWO)
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), *FAST]) == 0
    import shutil

    shutil.rmtree(out / "parts")
    tensors = pl.read_parquet(out / "tensors.parquet").to_dicts()
    for row in tensors:
        if row["backend"] == "ort-cpu" and row["case"].endswith("::one") and row["data"]:
            row["data"] = bytes([row["data"][0] ^ 0xFF]) + row["data"][1:]
    pl.DataFrame(tensors, schema=pl.read_parquet_schema(out / "tensors.parquet")).write_parquet(out / "tensors.parquet")
    assert main(["report", str(out), "--rejudge"]) == 1
    assert labels(out)["one"] == "crash"


def test_a_full_disk_is_said_plainly_and_leaves_no_temporary_files(tmp_path, monkeypatch, capsys):
    import errno

    suite = write_suite(tmp_path, "two", TWO)
    original = pl.DataFrame.write_parquet

    def full_disk(self, path, *args, **kwargs):
        if "parts" in str(path):
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full_disk)
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), *FAST]) == 2
    assert "disk is full" in capsys.readouterr().err
    assert not [p for p in out.rglob("*.tmp")]


# --- issue 22: the other entry points and the nightly keep the guarantees ------------------------------------------


def test_backends_without_a_candidate_is_a_usage_error(tmp_path, capsys):
    """`--backends torch` ran the reference alone and said "no unexpected failures", exit 0: nothing was judged."""
    suite = write_suite(tmp_path, "tiny", "@case()\ndef one():\n    return torch.nn.Identity(), (torch.ones(2),)\n")
    for backends in ("torch", "torch,torch-fp64"):
        assert main(["run", str(suite), "--backends", backends, "--out", str(tmp_path / "run"), *FAST]) == 2
        assert "no candidate to compare with the reference" in capsys.readouterr().err
    assert not (tmp_path / "run" / "runs.parquet").exists()


def test_a_full_disk_said_by_polars_is_still_a_full_disk(tmp_path, monkeypatch, capsys):
    """polars raises ComputeError, not OSError, when the disk fills up: that was exit 3, "a bug in difftest"."""
    suite = write_suite(tmp_path, "two", TWO)
    original = pl.DataFrame.write_parquet

    def full_disk(self, path, *args, **kwargs):
        if "parts" in str(path):
            Path(path).write_bytes(b"partial")
            raise pl.exceptions.ComputeError("parquet: failed to write: No space left on device (os error 28)")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full_disk)
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and "internal error" not in err and "Traceback" not in err
    assert not [p for p in out.rglob("*.tmp")]


def test_report_never_writes_through_a_link_out_of_the_run_folder(tmp_path, capsys):
    suite = write_suite(tmp_path, "two", TWO)
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), *FAST]) == 0
    victim, elsewhere = tmp_path / "victim.txt", tmp_path / "elsewhere"
    victim.write_text("PRECIOUS")
    elsewhere.mkdir()
    for name in ("index.html", "junit.xml", "summary.json"):
        (out / name).unlink()
        (out / name).symlink_to(victim)
    import shutil

    shutil.rmtree(out / "cases")
    (out / "cases").symlink_to(elsewhere, target_is_directory=True)
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert victim.read_text() == "PRECIOUS" and not list(elsewhere.iterdir())
    assert not (out / "index.html").is_symlink() and "two::one" in (out / "index.html").read_text()
    assert (out / "cases").is_dir() and not (out / "cases").is_symlink()
    assert "removed the symbolic link" in capsys.readouterr().err


def test_merge_never_copies_what_a_link_points_to(tmp_path):
    suite = write_suite(tmp_path, "two", TWO)
    one, two = tmp_path / "s1", tmp_path / "s2"
    for k, folder in ((1, one), (2, two)):
        assert (
            main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(folder), "--shard", f"{k}/2", *FAST])
            == 0
        )
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("TOP SECRET")
    (one / "logs" / "planted.log").symlink_to(secret / "key.txt")
    (one / "onnx" / "planted").symlink_to(secret, target_is_directory=True)
    merged = tmp_path / "merged"
    assert main(["merge", str(one), str(two), "--out", str(merged)]) == 0
    assert not any("TOP SECRET" in p.read_text(errors="ignore") for p in merged.rglob("*") if p.is_file())
    assert not (merged / "logs" / "planted.log").exists() and not (merged / "onnx" / "planted").exists()


def _crafted(out: Path, target: Path, table: str, change) -> Path:
    import shutil

    shutil.copytree(out, target, ignore=shutil.ignore_patterns("parts"))
    change(pl.read_parquet(target / f"{table}.parquet")).write_parquet(target / f"{table}.parquet")
    return target


def test_damaged_run_folders_are_usage_errors_naming_the_file_and_column(tmp_path, capsys):
    suite = write_suite(tmp_path, "two", TWO)
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), *FAST]) == 0
    attacks = {
        "empty_cases": ("cases", lambda df: df.clear(), [], "cases.parquet", "holds no row"),
        "empty_runs": ("runs", lambda df: df.clear(), [], "runs.parquet", "holds 0 rows"),
        "no_case_column": ("cases", lambda df: df.drop("case"), [], "cases.parquet", "'case'"),
        "seconds_as_text": (
            "cases",
            lambda df: df.with_columns(pl.lit("soon").alias("seconds")),
            [],
            "cases.parquet",
            "'seconds'",
        ),
        "backend_as_number": (
            "tensors",
            lambda df: df.with_columns(pl.lit(7).alias("backend")),
            ["--rejudge"],
            "tensors.parquet",
            "'backend'",
        ),
        "bogus_label": (
            "comparisons",
            lambda df: df.with_columns(pl.lit("bogus").alias("label")),
            [],
            "comparisons.parquet",
            "'label'",
        ),
        "exports_not_json": (
            "cases",
            lambda df: df.with_columns(pl.lit("{not json").alias("exports")),
            [],
            "cases.parquet",
            "'exports'",
        ),
        "null_candidate": (
            "comparisons",
            lambda df: df.with_columns(pl.lit(None, pl.String).alias("candidate")),
            [],
            "comparisons.parquet",
            "'candidate'",
        ),
    }
    for name, (table, change, extra, file, column) in attacks.items():
        crafted = _crafted(out, tmp_path / name, table, change)
        capsys.readouterr()
        code = main(["report", str(crafted), *extra])
        err = capsys.readouterr().err
        assert code == 2, f"{name}: exit {code}\n{err}"
        assert file in err and column in err and "Traceback" not in err, f"{name}: {err}"


def test_control_bytes_and_markdown_never_reach_the_report_raw(tmp_path, capsys):
    noisy = write_suite(
        tmp_path / "new",
        "noisy",
        """
class Fails(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("bad \\x00 byte \\x1b[31m red [click](https://evil.example) <b>bold</b> @someone | cell")


@case(exporter="torchscript", name="n_[x](https://evil.example)_*b*_`c`")
def noisy():
    return Fails().eval(), (torch.ones(2),)
""",
    )
    base, new = tmp_path / "base", tmp_path / "new_run"
    assert (
        main(
            [
                "run",
                str(write_suite(tmp_path / "old", "noisy", TWO)),
                "--backends",
                "torch,ort-cpu",
                "--out",
                str(base),
                *FAST,
            ]
        )
        == 0
    )
    assert main(["run", str(noisy), "--backends", "torch,ort-cpu", "--out", str(new), *FAST]) == 1
    for page in [new / "index.html", *(new / "cases").glob("*.html")]:
        text = page.read_text()
        assert "\x00" not in text and "\x1b" not in text, page
    assert "bad \\x00 byte" in (new / "index.html").read_text()  # said, as text
    assert main(["compare", str(base), str(new)]) == 1
    markdown = (new / "compare.md").read_text()
    assert "\x00" not in markdown and "\x1b" not in markdown
    assert "](https" not in markdown and "<b>" not in markdown and " @someone" not in markdown
    assert "noisy\\:\\:n\\_\\[x\\]\\(https" in markdown  # the name is there, as text
    rows = [line for line in markdown.splitlines() if line.startswith("| noisy")]
    assert rows and all(line.count(" | ") == 4 for line in rows)  # a '|' in a message adds no cell


RESUMED = """
import helper_for_resume
from difftest.suite.graph_edit import replace_op


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


@case(exporter="torchscript", onnx_transform=replace_op("Mul", "Add") if helper_for_resume.BROKEN else None)
def doubles():
    return Double().eval(), (torch.arange(1.0, 4.0),)


@case(exporter="torchscript")
def untouched():
    return Double().eval(), (torch.ones(2),)
"""


def test_resume_runs_again_a_case_whose_suite_or_helper_changed(tmp_path, capsys):
    """--resume kept the results of cases whose code had changed since: a stale pass, exit 0."""
    folder = tmp_path / "suite"
    suite = write_suite(folder, "resumed", RESUMED)
    helper = folder / "helper_for_resume.py"
    helper.write_text("BROKEN = False\n")
    out = tmp_path / "run"
    args = ["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), "--jobs", "1", *FAST]
    assert main(args) == 0
    helper.write_text("BROKEN = True\n")  # only the module the suite imports changes
    capsys.readouterr()
    assert main([*args, "--resume"]) == 1
    assert "run again" in capsys.readouterr().out
    assert labels(out)["doubles"] == "mismatch"
    suite.write_text(suite.read_text().replace("if helper_for_resume.BROKEN", "if False and helper_for_resume.BROKEN"))
    assert main([*args, "--resume"]) == 0  # the suite file changed: run again, and it agrees now
    assert labels(out) == {"doubles": "exact", "untouched": "exact"}
