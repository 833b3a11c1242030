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
    (w,) = load(write(tmp_path, '[[waiver]]\ncase = "ops::*"\nlabel = "nonfinite"\nreason = "r"\n'
                                'expires = 2027-01-02\nlink = "https://example.org/1"\n'))
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
    args = ["run", f"{data_dir}/tiny_suite.py::wrong_op", "--backends", "torch,ort-cpu", "--probes", "base",
            "--no-oracle"]
    waiver = '[[waiver]]\ncase = "tiny_suite::wrong_op"\nlabel = "mismatch"\nreason = "a rewrite bug we track"\n'
    live = write(tmp_path, waiver + 'link = "https://example.org/42"\n'
                 '[[waiver]]\ncase = "tiny_suite::gone"\nlabel = "layout"\nreason = "fixed"\n')
    assert main([*args, "--out", str(tmp_path / "live"), "--expectations", str(live)]) == 0
    summary = json.loads((tmp_path / "live" / "summary.json").read_text())
    assert summary["status"] == {"waived": 1} and summary["waivers"]["stale"][0]["case"] == "tiny_suite::gone"
    assert "stale waiver" in capsys.readouterr().out
    assert "a rewrite bug we track" in (tmp_path / "live" / "index.html").read_text()

    expired = write(tmp_path, waiver + "expires = 2020-01-01\n")
    assert main([*args, "--out", str(tmp_path / "expired"), "--expectations", str(expired)]) == 1
    assert "EXPIRED waiver" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "none"), "--expectations", str(tmp_path / "missing.toml")]) == 2
