"""compare, --baseline, --shard and merge on real small runs (no mocked tables)."""

import json
from pathlib import Path

import polars as pl

from difftest.cli import main
from difftest.nightly.shards import select

DATA = Path(__file__).parent / "data"
FAST = ["--backends", "torch,ort-cpu", "--probes", "base,alt", "--no-oracle", "--reruns", "0"]

SUITE = """
import torch
from difftest import case
from difftest.suite.graph_edit import replace_op


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


@case(exporter="torchscript")
def stable():
    return Double().eval(), (torch.arange(6.0),)


@case(exporter="torchscript"{broken})
def changing():
    return Double().eval(), (torch.arange(6.0),)
"""


def suite(folder: Path, broken: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nightly.py"
    path.write_text(SUITE.format(broken=', onnx_transform=replace_op("Mul", "Add")' if broken else ""))
    return path


def test_compare_shows_new_failure_then_fixed(tmp_path, capsys):
    before = tmp_path / "reports" / "20260101-000000"
    after = tmp_path / "reports" / "20260102-000000"
    assert main(["run", str(suite(tmp_path / "v1", broken=False)), *FAST, "--out", str(before)]) == 0
    assert main(["run", str(suite(tmp_path / "v2", broken=True)), *FAST, "--out", str(after)]) == 1
    capsys.readouterr()
    assert main(["compare", str(before), str(after)]) == 1
    out = capsys.readouterr().out
    assert "new_failure" in out and "nightly::changing [ort-cpu]" in out and "nightly::stable" not in out
    markdown = (after / "compare.md").read_text()
    assert "### New failures (1)" in markdown and "nightly\\:\\:changing" in markdown
    assert "nightly::changing" in (after / "compare.html").read_text()
    assert main(["compare", str(after), str(before), "--out", str(tmp_path / "back")]) == 0
    assert "### Fixed (1)" in (tmp_path / "back" / "compare.md").read_text()


def test_baseline_marks_known_failures_and_fails_only_on_new_ones(tmp_path):
    broken = suite(tmp_path / "v2", broken=True)
    first, second = tmp_path / "r" / "20260101-000000", tmp_path / "r" / "20260102-000000"
    assert main(["run", str(broken), *FAST, "--out", str(first)]) == 1
    assert main(["run", str(broken), *FAST, "--out", str(second), "--baseline", str(first)]) == 0
    summary = json.loads((second / "summary.json").read_text())
    assert summary["new_failures"] == 0 and summary["failures"][0]["new"] is False
    index = (second / "index.html").read_text()
    assert "Known failures: also failing in the baseline (1)" in index and "compare.html" in index
    assert main(["report", str(second)]) == 0  # the baseline is remembered for re-renders


def test_shards_are_stable_and_balanced():
    ids = [f"s::c{i}" for i in range(10)]
    shards = [select(ids, k, 3) for k in (1, 2, 3)]
    assert set().union(*shards) == set(ids) and sum(map(len, shards)) == 10
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shards == [select(list(reversed(ids)), k, 3) for k in (1, 2, 3)]  # order of discovery does not matter
    durations = {**{i: 1.0 for i in ids}, "s::c0": 100.0}
    weighted = [select(ids, k, 2, durations) for k in (1, 2)]
    assert any(w == {"s::c0"} for w in weighted)  # the long case gets a shard to itself


def _comparable(run_dir: Path) -> list[dict]:
    df = pl.read_parquet(run_dir / "comparisons.parquet").drop("run")
    return df.sort(["case", "probe", "output", "candidate"]).to_dicts()


def test_two_shards_merged_equal_a_full_run(tmp_path, capsys):
    args = [str(DATA / "slow_suite.py"), *FAST]
    full, one, two, merged = (tmp_path / n for n in ("full", "one", "two", "merged"))
    assert main(["run", *args, "--out", str(full)]) == 0
    # The balancer is given fixed durations: the measured ones depend on how busy the machine was.
    durations = tmp_path / "durations"
    durations.mkdir()
    pl.read_parquet(full / "cases.parquet").with_columns(pl.lit(1.0).alias("seconds")).write_parquet(
        durations / "cases.parquet"
    )
    assert main(["run", *args, "--out", str(one), "--shard", "1/2", "--durations", str(durations)]) == 0
    assert main(["run", *args, "--out", str(two), "--shard", "2/2", "--durations", str(durations)]) == 0
    counts = [len(pl.read_parquet(d / "cases.parquet")) for d in (one, two)]
    assert counts == [2, 2]
    assert main(["merge", str(one), str(two), "--out", str(merged)]) == 0
    assert _comparable(merged) == _comparable(full)
    assert (merged / "index.html").exists() and len(list((merged / "cases").glob("*.html"))) == 4
    cases = pl.read_parquet(merged / "cases.parquet").to_dicts()
    # Artefacts are recorded relative to the run folder, so a merged (or moved) run finds its own copies.
    assert all(not Path(c["onnx_path"]).is_absolute() and (merged / c["onnx_path"]).is_file() for c in cases)
    capsys.readouterr()
    assert main(["merge", str(one), str(one), "--out", str(tmp_path / "dup")]) == 2
    assert "in both" in capsys.readouterr().err


CRASHES = """
import os
import signal

import torch
from difftest import case
from difftest.suite.graph_edit import replace_op


class Double(torch.nn.Module):
    def forward(self, x):
        if {crash} and not torch.jit.is_tracing():
            os.kill(os.getpid(), signal.SIGSEGV)
        return x * 2


@case(exporter="torchscript"{broken})
def flips():
    return Double().eval(), (torch.arange(6.0),)
"""


def test_a_crash_last_night_does_not_make_tonights_mismatch_known(tmp_path):
    """Nothing was compared in a case that crashed: a mismatch in it tonight is a new failure, exit 1."""
    path = tmp_path / "s" / "crashes.py"
    path.parent.mkdir()

    def night(n):
        return tmp_path / "r" / f"2026010{n}-000000"

    path.write_text(CRASHES.format(crash=True, broken=""))
    assert main(["run", str(path), *FAST, "--out", str(night(1))]) == 1
    assert pl.read_parquet(night(1) / "comparisons.parquet")["label"].to_list()[0] == "crash"
    path.write_text(CRASHES.format(crash=False, broken=', onnx_transform=replace_op("Mul", "Add")'))
    assert main(["run", str(path), *FAST, "--out", str(night(2)), "--baseline", str(night(1))]) == 1
    summary = json.loads((night(2) / "summary.json").read_text())
    assert summary["new_failures"] == 1 and summary["failures"][0]["new"] is True
    assert "### New failures (1)" in (night(2) / "compare.md").read_text()
    # the same mismatch the next night is known
    assert main(["run", str(path), *FAST, "--out", str(night(3)), "--baseline", str(night(2))]) == 0


def test_merge_says_which_shards_are_missing_or_unfinished_and_fails(tmp_path, capsys):
    """3 of 4 shards merged gave "pass", exit 0; a shard stopped by SIGTERM merged with its unfinished cases absent."""
    import signal
    import subprocess
    import sys

    args = [str(DATA / "slow_suite.py"), *FAST, "--localize-budget", "0", "--control-budget", "0", "--jobs", "1"]
    one, two, three = (tmp_path / f"s{k}" for k in (1, 2, 3))
    assert main(["run", *args, "--out", str(two), "--shard", "2/3"]) == 0
    assert main(["run", *args, "--out", str(three), "--shard", "3/3"]) == 0
    # shard 1/3 holds two cases (equal weights: slow_1 and slow_4); stop it after the first
    stopped = subprocess.Popen(
        [sys.executable, "-m", "difftest", "run", *args, "--out", str(one), "--shard", "1/3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in stopped.stdout:
        if "[1/2]" in line:
            stopped.send_signal(signal.SIGTERM)
            break
    stopped.communicate(timeout=120)
    assert stopped.returncode == 130
    assert pl.read_parquet(one / "cases.parquet")["name"].to_list() == ["slow_1"]
    capsys.readouterr()

    missing = tmp_path / "missing"
    assert main(["merge", str(two), str(three), "--out", str(missing)]) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE: missing shard(s) 1/3" in out and "merge::shard_1_of_3_missing" in out
    summary = json.loads((missing / "summary.json").read_text())
    assert any(f["case"] == "merge::shard_1_of_3_missing" for f in summary["failures"])
    assert "shard_1_of_3_missing" in (missing / "junit.xml").read_text()
    assert "merge::shard_1_of_3_missing" in (missing / "index.html").read_text()

    unfinished = tmp_path / "unfinished"
    assert main(["merge", str(one), str(two), str(three), "--out", str(unfinished)]) == 1
    out = capsys.readouterr().out
    assert f"unfinished shard {one} (1 case(s) not run)" in out
    summary = json.loads((unfinished / "summary.json").read_text())
    (lost,) = [f for f in summary["failures"] if f["case"] == "slow_suite::slow_4"]
    assert "stopped before this case finished" in lost["evidence"]
    assert 'name="slow_4[ort-cpu]"' in (unfinished / "junit.xml").read_text()
