import datetime as dt
import json
from types import SimpleNamespace

import pytest

from difftest.cli import main
from difftest.errors import UsageError
from difftest.judge.waivers import Waiver, apply, load


def write(tmp_path, text):
    path = tmp_path / "expectations.toml"
    path.write_text(text)
    return path


def outcome(case="s::c", candidate="ort-cpu", label="mismatch", status="fail"):
    return SimpleNamespace(case=case, candidate=candidate, label=label, status=status, reason="unexpected mismatch")


def test_load_validates_each_entry(tmp_path):
    with pytest.raises(UsageError, match=r"waiver #1: missing reason"):
        load(write(tmp_path, '[[waiver]]\ncase = "a"\nlabel = "mismatch"\n'))
    with pytest.raises(UsageError, match="unknown label 'mismatchh'"):
        load(write(tmp_path, '[[waiver]]\ncase = "a"\nlabel = "mismatchh"\nreason = "r"\n'))
    with pytest.raises(UsageError, match="not valid TOML"):
        load(write(tmp_path, "[[waiver]\n"))
    with pytest.raises(UsageError, match="expires must be a date"):
        load(write(tmp_path, '[[waiver]]\ncase = "a"\nlabel = "mismatch"\nreason = "r"\nexpires = "soon"\n'))
    (w,) = load(
        write(
            tmp_path,
            '[[waiver]]\ncase = "ops::*"\nlabel = "nonfinite"\nreason = "r"\n'
            'expires = 2027-01-02\nlink = "https://example.org/1"\n',
        )
    )
    assert w.expires == "2027-01-02" and w.candidate == "*"


def test_apply_waives_matches_and_reports_stale_and_expired():
    live = Waiver(case="s::*", label="mismatch", reason="known bug", candidate="ort-*")
    stale = Waiver(case="other::*", label="layout", reason="fixed long ago")
    old = Waiver(case="s::d", label="mismatch", reason="was known", expires="2020-01-01")
    results = [outcome(), outcome(case="s::d", candidate="torch-cuda")]
    report = apply(results, [live, stale, old], today=dt.date(2026, 11, 25))
    assert results[0].status == "waived" and "known bug" in results[0].reason
    assert results[1].status == "fail" and "expired on 2020-01-01" in results[1].reason
    assert [w for w, _ in report.used] == [live] and report.stale == [stale] and report.expired == [old]


def test_run_with_waivers(tmp_path, data_dir, capsys):
    args = [
        "run",
        f"{data_dir}/tiny_suite.py::wrong_op",
        "--backends",
        "torch,ort-cpu",
        "--probes",
        "base",
        "--no-oracle",
    ]
    waiver = '[[waiver]]\ncase = "tiny_suite::wrong_op"\nlabel = "mismatch"\nreason = "a rewrite bug we track"\n'
    live = write(
        tmp_path,
        waiver + 'link = "https://example.org/42"\n'
        '[[waiver]]\ncase = "tiny_suite::gone"\nlabel = "layout"\nreason = "fixed"\n',
    )
    assert main([*args, "--out", str(tmp_path / "live"), "--expectations", str(live)]) == 0
    summary = json.loads((tmp_path / "live" / "summary.json").read_text())
    assert summary["status"] == {"waived": 1} and summary["waivers"]["stale"][0]["case"] == "tiny_suite::gone"
    assert "stale waiver" in capsys.readouterr().out
    assert "a rewrite bug we track" in (tmp_path / "live" / "index.html").read_text()

    expired = write(tmp_path, waiver + "expires = 2020-01-01\n")
    assert main([*args, "--out", str(tmp_path / "expired"), "--expectations", str(expired)]) == 1
    assert "EXPIRED waiver" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "none"), "--expectations", str(tmp_path / "missing.toml")]) == 2


TWO_OUTPUTS = """
import torch
from difftest import case


class Two(torch.nn.Module):
    def forward(self, x):
        return {"scores": x * 2, "boxes": x * 3}


def _add_instead_of_mul(count):
    def transform(model):
        for node in [n for n in model.graph.node if n.op_type == "Mul"][:count]:
            node.op_type = "Add"
        return model
    return transform


@case(exporter="torchscript", onnx_transform=_add_instead_of_mul({count}))
def two():
    return Two().eval(), (torch.arange(1.0, 7.0),)
"""


def test_a_waiver_covers_the_output_it_names_not_a_new_failure_on_another(tmp_path):
    """A waiver matched the case x candidate's worst label: a new mismatch on another output was swallowed."""
    import polars as pl

    suite = tmp_path / "s" / "waived.py"
    suite.parent.mkdir()
    args = [
        "run",
        str(suite),
        "--backends",
        "torch,ort-cpu",
        "--probes",
        "base",
        "--no-oracle",
        "--reruns",
        "0",
        "--localize-budget",
        "0",
        "--control-budget",
        "0",
    ]
    suite.write_text(TWO_OUTPUTS.replace("{count}", "1"))
    assert main([*args, "--out", str(tmp_path / "one")]) == 1
    failing = pl.read_parquet(tmp_path / "one" / "comparisons.parquet").filter(~pl.col("passed"))
    (output,) = failing["output"].unique().to_list()  # the one output the fault reaches
    waiver = write(
        tmp_path,
        f'[[waiver]]\ncase = "waived::two"\nlabel = "mismatch"\noutput = "{output}"\n'
        'reason = "a known bug on this output"\n',
    )
    assert main([*args, "--out", str(tmp_path / "waived"), "--expectations", str(waiver)]) == 0
    assert json.loads((tmp_path / "waived" / "summary.json").read_text())["status"] == {"waived": 1}
    suite.write_text(TWO_OUTPUTS.replace("{count}", "2"))  # tonight the other output is wrong too
    assert main([*args, "--out", str(tmp_path / "two"), "--expectations", str(waiver)]) == 1
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    (failure,) = summary["failures"]
    assert "waived only in part" in failure["reason"] and "mismatch on" in failure["reason"]


def test_a_waiver_without_output_still_covers_every_output():
    live = Waiver(case="s::c", label="mismatch", reason="known")
    o = SimpleNamespace(case="s::c", candidate="ort-cpu", label="mismatch", status="fail", reason="", expected=None)
    rows = [
        {"case": "s::c", "candidate": "ort-cpu", "output": name, "label": "mismatch", "passed": False}
        for name in ("a", "b")
    ]
    apply([o], [live], comparisons=rows)
    assert o.status == "waived"
    narrow = Waiver(case="s::c", label="mismatch", reason="known", output="a")
    o.status, o.reason = "fail", ""
    apply([o], [narrow], comparisons=rows)
    assert o.status == "fail" and "not mismatch on b" in o.reason
