"""Isolation by construction: every case starts in a clean process, whatever the case before it did, through every
entry point (``difftest run``, ``difftest.check``, ``Session``). Each test performs the attack: a case that leaves
CPU autocast on, one that patches difftest's own tensor encoder, a factory that forks and carries on in both
processes, a case that leaves processes in their own sessions; the faulty case after it must still fail. (The
pytest plugin's side is in ``test_pytest_plugin.py``.)"""

import os
import signal
import time
from pathlib import Path

import polars as pl
import pytest
import torch

import difftest
from difftest.cli import main

FAST = ["--probes", "base", "--no-oracle", "--reruns", "0", "--localize-budget", "0", "--control-budget", "0"]
CHECK_FAST = {"backends": ["ort-cpu"], "probes": ["base"], "oracle": False, "cache": False, "control_budget": 0}

FAULTY = '''
import numpy as np
from onnx import numpy_helper


def _weights_off(model):
    """The deployed graph's weights are 0.3% off: a fault float32's tolerance catches, bfloat16's would not."""
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.ndim == 2:
            init.CopyFrom(numpy_helper.from_array((array * 1.003).astype(array.dtype), init.name))
    return model


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x):
        return self.lin(x)


@case(exporter="torchscript", onnx_transform=_weights_off)
def z_faulty():
    return Lin().eval(), (torch.randn(4, 16, generator=torch.Generator().manual_seed(1)),)
'''


def write_suite(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text("import os, signal, subprocess, sys, time\nimport torch\nfrom difftest import case\n\n" + body)
    return path


def rows(out: Path, table: str) -> dict[str, dict]:
    return {r["case"].split("::", 1)[1]: r for r in pl.read_parquet(out / f"{table}.parquet").to_dicts()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


# --- the CLI: a leak in one case never reaches the next -------------------------------------------------------


def test_autocast_left_on_does_not_soften_the_next_cases_tolerance(tmp_path):
    suite = write_suite(
        tmp_path,
        "autocast",
        """
class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


@case(exporter="torchscript")
def a_leaves_autocast_on():
    torch.set_autocast_enabled("cpu", True)
    torch.set_autocast_dtype("cpu", torch.bfloat16)
    return Double().eval(), (torch.ones(4),)
"""
        + FAULTY,
    )
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), "--jobs", "1", *FAST]) == 1
    comparisons = rows(out, "comparisons")
    assert comparisons["z_faulty"]["label"] == "mismatch" and not comparisons["z_faulty"]["passed"]
    assert comparisons["a_leaves_autocast_on"]["passed"]
    notes = " ".join(rows(out, "cases")["a_leaves_autocast_on"]["isolation"])
    assert "autocast" in notes and "ended with it" in notes  # said on the case that did it


def test_a_case_that_forges_difftests_encoder_cannot_forge_the_next_case(tmp_path):
    suite = write_suite(
        tmp_path,
        "forger",
        """
import numpy as np
import difftest.record.tables as tables


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


@case(exporter="torchscript")
def a_forges_the_encoder():
    real = tables.encode
    tables.encode = lambda array, max_bytes: real(np.zeros_like(array), max_bytes)  # everything agrees
    return Double().eval(), (torch.ones(4),)
"""
        + FAULTY,
    )
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), "--jobs", "1", *FAST]) == 1
    assert rows(out, "comparisons")["z_faulty"]["label"] == "mismatch"


def test_every_case_runs_in_its_own_process_from_one_template(tmp_path):
    suite = write_suite(
        tmp_path,
        "pids",
        """
class Pid(torch.nn.Module):
    def forward(self, x):
        return x + 0


def make(k):
    def factory():
        print("PID", os.getpid(), "PARENT", os.getppid())
        return Pid().eval(), (torch.ones(2),)
    return factory


for k in range(3):
    case(name=f"c{k}", exporter="torchscript")(make(k))
""",
    )
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), "--jobs", "1", *FAST]) == 0
    seen = [
        line.split()
        for log in (out / "logs").glob("*.log")
        for line in log.read_text().splitlines()
        if line.startswith("PID")
    ]
    assert len({s[1] for s in seen}) == 3  # a process per case
    assert len({s[3] for s in seen}) == 1  # forked from one template, not an interpreter start each
    spawned = tmp_path / "spawned"
    assert (
        main(
            [
                "run",
                str(suite),
                "--backends",
                "torch,ort-cpu",
                "--out",
                str(spawned),
                "--jobs",
                "1",
                "--isolate",
                "spawn",
                *FAST,
            ]
        )
        == 0
    )
    parents = {
        line.split()[3]
        for log in (spawned / "logs").glob("*.log")
        for line in log.read_text().splitlines()
        if line.startswith("PID")
    }
    assert len(parents) == 3  # --isolate spawn: a fresh template per case as well


# --- results belong to their task ------------------------------------------------------------------------------

FORKS = """
class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


class Triple(torch.nn.Module):
    def forward(self, x):
        return x * 3


@case(exporter="torchscript")
def a_forks_and_both_carry_on():
    child = os.fork()
    if child:
        os.waitpid(child, 0)  # the forked copy runs the whole case and reports first
    return Double().eval(), (torch.ones(3),)


@case(exporter="torchscript")
def b_forks_and_only_the_copy_carries_on():
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        os._exit(0)
    return Double().eval(), (torch.ones(3),)


@case(exporter="torchscript")
def c_victim():
    return Triple().eval(), (torch.full((5,), 2.0),)
"""


def test_a_forking_factory_cannot_replace_another_cases_result(tmp_path):
    suite = write_suite(tmp_path, "forks", FORKS)
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), "--jobs", "1", *FAST]) == 1
    cases, comparisons = rows(out, "cases"), rows(out, "comparisons")
    assert set(cases) == {"a_forks_and_both_carry_on", "b_forks_and_only_the_copy_carries_on", "c_victim"}
    # the case's own result is kept; its copy's is refused, and said
    assert comparisons["a_forks_and_both_carry_on"]["label"] == "exact"
    assert "refused" in " ".join(cases["a_forks_and_both_carry_on"]["isolation"])
    # only a copy reported: the case is lost, loudly
    lost = comparisons["b_forks_and_only_the_copy_carries_on"]
    assert lost["label"] == "crash" and not lost["passed"] and lost["blame"] is None
    assert "lost" in lost["evidence"]
    # the victim has its own result, not a copy of another case's
    assert comparisons["c_victim"]["label"] == "exact"
    tensors = pl.read_parquet(out / "tensors.parquet").filter(
        (pl.col("case").str.ends_with("c_victim")) & (pl.col("backend") == "torch") & (pl.col("output") == "output")
    )
    assert tensors["shape"].to_list() == [[5]]


# --- orphans die with their case -------------------------------------------------------------------------------


def test_processes_a_case_leaves_in_their_own_session_die_with_the_case(tmp_path, monkeypatch):
    pids = tmp_path / "pids.txt"
    seen = tmp_path / "seen.txt"
    monkeypatch.setenv("DIFFTEST_TEST_PIDS", str(pids))
    monkeypatch.setenv("DIFFTEST_TEST_SEEN", str(seen))
    suite = write_suite(
        tmp_path,
        "daemons",
        """
class Daemonizes(torch.nn.Module):
    def forward(self, x):
        server = subprocess.Popen(["sleep", "300"], start_new_session=True)  # a server's own session
        first = os.fork()
        if first == 0:  # a classic daemon: fork, setsid, fork again, the middle one exits
            os.setsid()
            if os.fork() == 0:
                with open(os.environ["DIFFTEST_TEST_PIDS"], "a") as handle:
                    handle.write(f"{os.getpid()}\\n")
                time.sleep(300)
            os._exit(0)
        os.waitpid(first, 0)
        with open(os.environ["DIFFTEST_TEST_PIDS"], "a") as handle:
            handle.write(f"{server.pid}\\n")
        return x + 1


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"


@case(exporter="torchscript")
def a_leaves_daemons():
    return Daemonizes().eval(), (torch.ones(2),)


@case(exporter="torchscript")
def b_looks_for_them():
    deadline = time.monotonic() + 30
    while len(open(os.environ["DIFFTEST_TEST_PIDS"]).read().split()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(p) for p in open(os.environ["DIFFTEST_TEST_PIDS"]).read().split()]
    with open(os.environ["DIFFTEST_TEST_SEEN"], "w") as handle:
        handle.write(" ".join(f"{p}:{_alive(p)}" for p in pids))
    return torch.nn.Identity().eval(), (torch.ones(2),)
""",
    )
    out = tmp_path / "run"
    code = main(
        [
            "run",
            str(suite),
            "--backends",
            "torch,ort-cpu",
            "--out",
            str(out),
            "--jobs",
            "1",
            "--probes",
            "base",
            "--no-oracle",
            "--localize-budget",
            "0",
            "--control-budget",
            "0",
        ]
    )
    assert code == 0
    found = dict(item.split(":") for item in seen.read_text().split())
    assert len(found) >= 2 and set(found.values()) == {"False"}, f"alive when the next case ran: {found}"
    assert "killed" in " ".join(rows(out, "cases")["a_leaves_daemons"]["isolation"])


def test_a_setsid_process_of_a_timed_out_case_is_killed(tmp_path, monkeypatch):
    pids = tmp_path / "pids.txt"
    monkeypatch.setenv("DIFFTEST_TEST_PIDS", str(pids))
    suite = write_suite(
        tmp_path,
        "hangs",
        """
class Hangs(torch.nn.Module):
    def forward(self, x):
        server = subprocess.Popen(["sleep", "300"], start_new_session=True)
        with open(os.environ["DIFFTEST_TEST_PIDS"], "a") as handle:
            handle.write(f"{server.pid}\\n")
        time.sleep(300)
        return x


@case(exporter="torchscript")
def hangs():
    return Hangs().eval(), (torch.ones(2),)
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
                "--timeout",
                "10",
                *FAST,
            ]
        )
        == 1
    )
    assert rows(out, "comparisons")["hangs"]["label"] == "timeout"
    (pid,) = [int(p) for p in pids.read_text().split()]
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid)


# --- difftest.check and Session: each check in a forked child -------------------------------------------------


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x):
        return self.lin(x)


class LeavesAutocast(torch.nn.Module):
    def forward(self, x):
        torch.set_autocast_enabled("cpu", True)
        torch.set_autocast_dtype("cpu", torch.bfloat16)
        torch.set_default_dtype(torch.float64)
        return x * 2


def _weights_off(model):
    from onnx import numpy_helper

    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.ndim == 2:
            init.CopyFrom(numpy_helper.from_array((array * 1.003).astype(array.dtype), init.name))
    return model


def _faulty_check(**options):
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    return difftest.check(
        Lin().eval(), (x,), exporter="torchscript", onnx_transform=_weights_off, name="faulty", **CHECK_FAST, **options
    )


def test_check_leaves_the_callers_process_as_it_was_and_the_next_check_fails_the_fault():
    alone = _faulty_check()
    assert alone.outcomes[0].label == "mismatch"
    leaky = difftest.check(LeavesAutocast().eval(), (torch.ones(4),), exporter="torchscript", **CHECK_FAST)
    assert leaky.passed
    assert not torch.is_autocast_enabled("cpu") and torch.get_default_dtype() == torch.float32
    after = _faulty_check()
    assert after.outcomes[0].label == "mismatch" and not after.passed  # the same verdict as alone


def test_a_check_starts_from_the_process_state_of_the_first_one(tmp_path):
    session = difftest.Session(tmp_path / "s", **CHECK_FAST)
    torch.set_autocast_enabled("cpu", True)  # the caller's own leak, between checks
    try:
        result = session.check(Lin().eval(), (torch.randn(4, 16),), exporter="torchscript", onnx_transform=_weights_off)
    finally:
        torch.set_autocast_enabled("cpu", False)
    assert result.outcomes[0].label == "mismatch"
    (case,) = pl.read_parquet(list((tmp_path / "s" / "parts" / "cases").glob("*.parquet"))).to_dicts()
    assert any("autocast" in note and "put back" in note for note in case["isolation"])


class Segfaults(torch.nn.Module):
    def forward(self, x):
        os.kill(os.getpid(), signal.SIGSEGV)
        return x


def test_a_model_that_crashes_is_a_crash_verdict_not_the_callers_death():
    result = difftest.check(Segfaults().eval(), (torch.ones(2),), exporter="torchscript", **CHECK_FAST)
    (outcome,) = result.outcomes
    assert outcome.label == "crash" and "SIGSEGV" in outcome.evidence and not result.passed


def test_the_in_process_mode_puts_back_what_the_case_changed_and_says_so(tmp_path):
    session = difftest.Session(tmp_path / "s", isolate="none", **CHECK_FAST)
    try:
        result = session.check(LeavesAutocast().eval(), (torch.ones(4),), exporter="torchscript")
        assert not torch.is_autocast_enabled("cpu") and torch.get_default_dtype() == torch.float32
    finally:
        torch.set_autocast_enabled("cpu", False)
        torch.set_default_dtype(torch.float32)
    assert result.passed
    (case,) = pl.read_parquet(list((tmp_path / "s" / "parts" / "cases").glob("*.parquet"))).to_dicts()
    notes = " ".join(case["isolation"])
    assert "autocast" in notes and "default dtype" in notes and "put back" in notes
    with pytest.raises(difftest.errors.UsageError, match="isolate"):
        difftest.Session(tmp_path / "t", isolate="worker", **CHECK_FAST)


def test_process_state_covers_autocast_denormals_and_the_fp32_precision_api():
    """What the in-process mode puts back: autocast per device and dtype, flush-denormal, the newer fp32_precision
    API; a getter that raises (the legacy TF32 flag, once the two APIs are mixed) is unrestorable, not skipped."""
    from difftest.worker import process_state

    before = process_state.snapshot()
    try:
        torch.set_autocast_enabled("cpu", True)
        torch.set_autocast_dtype("cpu", torch.float16)
        torch.set_flush_denormal(True)
        torch.backends.cudnn.conv.fp32_precision = "ieee"  # the legacy cudnn.allow_tf32 getter now raises
        seen = process_state.changes(before)
        restored = process_state.restore(before)
    finally:
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        torch.set_flush_denormal(False)
        torch.set_autocast_enabled("cpu", False)
        torch.set_autocast_dtype("cpu", torch.bfloat16)
    said = " ".join(seen.changed)
    assert "autocast: cpu" in said and "float16" in said and "flush-denormal" in said and "fp32_precision" in said
    assert any("TF32" in u and "could not be read after the case" in u for u in seen.unrestorable)
    assert not torch.is_autocast_enabled("cpu") and not process_state.changes(before).changed
    assert len(restored.changed) == 3


# --- item 17: the exporter's caches do not leak between exports in one process ---------------------------------


class Recurrent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = torch.nn.LSTM(4, 8, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


def test_one_recurrent_model_exports_twice_in_one_process():
    from difftest.export.exporter import export
    from difftest.suite.model_io import FlatModule, signature_of

    for _ in range(2):
        model = Recurrent().eval()
        signature, example = signature_of(model, (torch.randn(2, 5, 4),), {})
        result = export(
            FlatModule(model, signature).for_export(),
            tuple(example),
            ["output"],
            exporter="dynamo",
            dynamic_axes={"x": {0: "batch", 1: "seq"}},
        )
        assert result.ok, result.error


@pytest.mark.parametrize("isolate", ["case", "none"])
def test_two_checks_of_one_recurrent_model_both_export(isolate):
    for _ in range(2):
        result = difftest.check(
            Recurrent().eval(),
            (torch.randn(2, 5, 4),),
            dynamic_axes={"x": {0: "b", 1: "seq"}},
            isolate=isolate,
            **CHECK_FAST,
        )
        assert result.outcomes[0].label != "export_error", str(result)
        assert result.passed, str(result)


# --- the pytest plugin: collected cases and fixture calls, under pytester in a subprocess -----------------------

pytest_plugins = ["pytester"]

PLUGIN_HELPERS = """
import torch
from onnx import numpy_helper


def _weights_off(model):
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.ndim == 2:
            init.CopyFrom(numpy_helper.from_array((array * 1.003).astype(array.dtype), init.name))
    return model


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x):
        return self.lin(x)


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


class LeavesAutocast(torch.nn.Module):
    def forward(self, x):
        torch.set_autocast_enabled("cpu", True)
        torch.set_default_dtype(torch.float64)
        return x * 2
"""

PLUGIN_ZOO = """
import torch
from difftest import case
from helpers import Double, Lin, _weights_off


@case(exporter="torchscript")
def a_leaves_autocast_on():
    torch.set_autocast_enabled("cpu", True)
    torch.set_default_dtype(torch.float64)
    return Double().eval(), (torch.ones(4),)


@case(exporter="torchscript", onnx_transform=_weights_off)
def z_faulty():
    return Lin().eval(), (torch.randn(4, 16, generator=torch.Generator().manual_seed(1)),)
"""

PLUGIN_TESTS = """
import torch
from helpers import LeavesAutocast, Lin, _weights_off


def test_a_leaks(difftest):
    difftest(LeavesAutocast().eval(), (torch.ones(4),), exporter="torchscript").raise_for_failures()


def test_b_faulty(difftest):
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    difftest(Lin().eval(), (x,), exporter="torchscript", onnx_transform=_weights_off).raise_for_failures()


def test_c_the_pytest_process_is_untouched():
    assert not torch.is_autocast_enabled("cpu") and torch.get_default_dtype() == torch.float32
"""


@pytest.mark.parametrize("mode", ["forked", "in-process"])
def test_the_plugin_keeps_a_leak_from_reaching_the_next_case(pytester, mode):
    pytester.makepyfile(helpers=PLUGIN_HELPERS, zoo=PLUGIN_ZOO, test_leaks=PLUGIN_TESTS)
    extra = ["--difftest-in-process"] if mode == "in-process" else []
    result = pytester.runpytest_subprocess(
        "--difftest",
        "zoo.py",
        "test_leaks.py",
        "--difftest-backends",
        "ort-cpu",
        "--difftest-probes",
        "base",
        "-p",
        "no:cacheprovider",
        *extra,
    )
    result.assert_outcomes(passed=3, failed=2)  # both faulty cases fail, after the leaking ones
    out = result.stdout.str()
    assert "zoo::z_faulty [ort-cpu]: unexpected mismatch" in out
    assert "test_leaks::test_b_faulty: FAIL" in out and "mismatch" in out
