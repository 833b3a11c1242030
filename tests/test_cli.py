"""End to end: the CLI on tiny suites, real workers, real exports, real ONNX Runtime."""

import json
import xml.etree.ElementTree as ET

import polars as pl
import pytest

from difftest.cli import main
from difftest.record.tables import schema


def test_unexpected_failure_exits_1(tiny_run):
    code, _ = tiny_run
    assert code == 1


def test_tables_have_their_columns(tiny_run):
    _, out = tiny_run
    for table in ("runs", "cases", "tensors", "comparisons"):
        df = pl.read_parquet(out / f"{table}.parquet")
        assert list(df.columns) == list(schema(table)), table
    comparisons = pl.read_parquet(out / "comparisons.parquet")
    required = {
        "case": pl.String,
        "probe": pl.String,
        "output": pl.String,
        "reference": pl.String,
        "candidate": pl.String,
        "label": pl.String,
        "passed": pl.Boolean,
        "max_abs": pl.Float64,
        "max_rel": pl.Float64,
        "mismatched": pl.Int64,
        "evidence": pl.String,
    }
    for column, dtype in required.items():
        assert comparisons.schema[column] == dtype


def _labels(out, candidate="ort-cpu", probe="base"):
    df = pl.read_parquet(out / "comparisons.parquet").filter(
        (pl.col("candidate") == candidate) & pl.col("probe").is_in([probe, "*"])
    )
    return {row["case"].split("::")[1]: row for row in df.to_dicts()}


def test_each_case_gets_its_verdict(tiny_run):
    _, out = tiny_run
    labels = {name: row["label"] for name, row in _labels(out).items()}
    assert labels["double"] == "exact"
    assert labels["affine"] in ("exact", "numeric")
    assert labels["wrong_op"] == "mismatch"
    assert labels["wrong_op_expected"] == "mismatch"
    assert labels["unexportable"] == "export_error"
    assert labels["broken_graph"] == "runtime_error"
    assert labels["factory_raises"] == "export_error"
    rows = _labels(out)
    assert "factory failed" in rows["factory_raises"]["evidence"]
    assert rows["wrong_op"]["mismatched"] == 5 and rows["wrong_op"]["max_abs"] == 3.0  # |2x - (x + 2)| for x = 0..5


def test_warnings_for_training_mode_and_input_dtype(tiny_run):
    _, out = tiny_run
    cases = {c["name"]: c for c in pl.read_parquet(out / "cases.parquet").to_dicts()}
    warnings = " ".join(cases["training_mode_double_input"]["warnings"])
    assert "training mode" in warnings and "torch.float64" in warnings
    assert _labels(out)["training_mode_double_input"]["label"] == "runtime_error"  # eager refuses the dtype mix


def test_ort_cuda_is_skipped_with_reason_or_run(tiny_run):
    _, out = tiny_run
    rows = _labels(out, "ort-cuda")
    assert rows, "ort-cuda must never be dropped silently"
    if rows["double"]["label"] == "skipped":
        assert "CUDAExecutionProvider" in rows["double"]["evidence"] or "fell back" in rows["double"]["evidence"]
    runs = pl.read_parquet(out / "runs.parquet").to_dicts()[0]
    assert "ort-cuda" in runs["backends_requested"]


def test_dropped_and_graph_inputs_recorded(tiny_run):
    _, out = tiny_run
    cases = {c["name"]: c for c in pl.read_parquet(out / "cases.parquet").to_dicts()}
    assert cases["double"]["graph_inputs"] == ["x"] and cases["double"]["dropped_inputs"] == []
    assert cases["double"]["opset"] and cases["double"]["export_status"] == "ok"
    assert cases["unexportable"]["export_status"] == "error"
    assert "\x1b[" not in cases["unexportable"]["export_error"]


def test_junit_has_one_testcase_per_case_and_candidate(tiny_run):
    _, out = tiny_run
    root = ET.parse(out / "junit.xml").getroot()
    testcases = root.findall(".//testcase")
    assert len(testcases) == 8 * 2
    failed = {tc.get("name") for tc in testcases if tc.find("failure") is not None}
    assert failed == {"wrong_op[ort-cpu]"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 1 and summary["failures"][0]["case"] == "tiny_suite::wrong_op"


def test_report_escapes_untrusted_text(tiny_run):
    _, out = tiny_run
    index = (out / "index.html").read_text()
    assert "tiny_suite::double" in index and "ort-cuda" in index
    pages = {p.name.split("-")[0]: p.read_text() for p in (out / "cases").glob("*.html")}
    double = pages["tiny_suite__double"]
    assert "<script>alert('docstring')" not in double
    assert "&lt;script&gt;alert(" in double
    factory = pages["tiny_suite__factory_raises"]
    assert "<script>alert('message')" not in factory and "&lt;script&gt;" in factory
    assert "<b>loudly</b>" not in factory
    for html in [index, *pages.values()]:
        assert "http://" not in html and "https://" not in html.replace("https://docs", "")


def test_report_command_rerenders_from_tables(tiny_run, capsys):
    _, out = tiny_run
    (out / "index.html").unlink()
    assert main(["report", str(out)]) == 1
    assert (out / "index.html").exists()
    assert main(["report", str(out), "--rejudge"]) == 1


def test_passing_suite_exits_0(tmp_path, data_dir):
    out = tmp_path / "ok"
    assert main(["run", str(data_dir / "passing_suite.py"), "--backends", "torch,ort-cpu", "--out", str(out)]) == 0
    assert main(["run", str(data_dir / "passing_suite.py"), "--out", str(out)]) == 2  # already holds a run


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "{data}/broken_suite.py"], "syntax error"),
        (["run", "{data}/import_error_suite.py"], "no_such_module_for_difftest"),
        (["run", "{data}/passing_suite.py", "--backends", "torch,ort-gpu"], "unknown backend 'ort-gpu'"),
        (["run", "{data}/missing.py"], "no such file"),
        (["run", "{data}/passing_suite.py::nothing"], "no case named 'nothing'"),
        (["report", "{data}/nowhere"], "no such run directory"),
        (["run", "--jobs", "x"], "invalid int value"),
    ],
)
def test_usage_errors_exit_2_with_a_message(argv, message, data_dir, capsys):
    argv = [a.replace("{data}", str(data_dir)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_list_prints_case_ids(data_dir, capsys):
    assert main(["list", str(data_dir / "tiny_suite.py")]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["tiny_suite::double", "tiny_suite::affine"]
