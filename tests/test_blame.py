"""Blame follows from the candidates and controls that actually ran and from what produced the graph."""

import json
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from difftest.cli import main
from difftest.judge.verdicts import RunContext, judge_case
from difftest.record.tables import frame, row_dicts, tensor_row


@pytest.fixture(scope="module")
def blame_run(tmp_path_factory, data_dir_module):
    out = tmp_path_factory.mktemp("blame") / "run"
    code = main(
        [
            "run",
            str(data_dir_module / "blame_suite.py"),
            "--backends",
            "torch,ort-cpu",
            "--out",
            str(out),
            "--jobs",
            "2",
        ]
    )
    return code, out


@pytest.fixture(scope="module")
def data_dir_module():
    from pathlib import Path

    return Path(__file__).parent / "data"


def _rows(out, case):
    comparisons = pl.read_parquet(out / "comparisons.parquet").filter(pl.col("case") == f"blame_suite::{case}")
    return {(r["candidate"], r["probe"]): r for r in comparisons.to_dicts()}


def test_run_passes_with_expected_findings(blame_run):
    code, _ = blame_run
    assert code == 0


def test_runtime_bug_is_blamed_on_the_runtime_by_the_spec_reference(blame_run):
    _, out = blame_run
    row = _rows(out, "runtime_drops_nan")[("ort-cpu", "base")]
    assert row["blame"] == "ort-cpu"
    assert "onnx-ref" in row["blame_reason"] and "agrees with eager" in row["blame_reason"]
    # who, which rule and why are columns of their own; the evidence is the comparison's numbers only
    assert row["blame_rule"] == "spec_reference" and "Blame:" not in row["evidence"]
    stored = pl.read_parquet(out / "comparisons.parquet")
    assert {"blame", "blame_rule", "blame_reason"} <= set(stored.columns)


def test_exporter_bug_is_blamed_on_the_graph_by_the_spec_reference(blame_run):
    _, out = blame_run
    row = _rows(out, "exporter_truncates_division")[("ort-cpu", "base")]
    assert (row["blame"], row["blame_rule"]) == ("exporter", "spec_reference")
    assert "computes what ort-cpu computes" in row["blame_reason"]


def test_the_cases_own_rewrite_is_blamed_not_the_exporter(blame_run):
    _, out = blame_run
    row = _rows(out, "rewritten_by_the_case")[("ort-cpu", "base")]
    assert row["blame"] == "onnx_transform", row["evidence"]
    assert "without the case's onnx_transform agrees" in row["blame_reason"]


def test_the_rewrite_control_is_recorded_and_rejudged_from_its_tensors(blame_run, tmp_path):
    """The rewrite control's outputs are in the tensors table (pseudo-backend ``without_rewrite:<candidate>``) and
    a re-judge reads its verdict from them: a stored verdict flipped by hand changes nothing. A run without those
    rows (made before they were recorded) keeps the verdict it stored."""
    import shutil

    _, out = blame_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    shutil.rmtree(run / "parts")
    case_id = "blame_suite::rewritten_by_the_case"
    tensors = pl.read_parquet(run / "tensors.parquet")
    control = tensors.filter((pl.col("case") == case_id) & (pl.col("backend") == "without_rewrite:ort-cpu"))
    assert control.height > 0 and set(control["status"]) == {"ok"}
    rows = row_dicts(pl.read_parquet(run / "cases.parquet"), "cases")
    (case,) = [r for r in rows if r["case"] == case_id]
    assert case["controls"]["rewrite"]["agrees"] is True
    case["controls"]["rewrite"].update(agrees=False, evidence="forged")
    frame("cases", rows).write_parquet(run / "cases.parquet")
    main(["report", str(run), "--rejudge"])
    row = _rows(run, "rewritten_by_the_case")[("ort-cpu", "base")]
    assert row["blame"] == "onnx_transform", row["blame_reason"]
    assert "without the case's onnx_transform agrees" in row["blame_reason"] and "forged" not in row["blame_reason"]

    tensors.filter(pl.col("backend") != "without_rewrite:ort-cpu").write_parquet(run / "tensors.parquet")
    main(["report", str(run), "--rejudge"])
    row = _rows(run, "rewritten_by_the_case")[("ort-cpu", "base")]
    assert row["blame"] == "exporter" and "already differs from eager" in row["blame_reason"]


def test_controls_are_recorded_but_are_not_results(blame_run):
    _, out = blame_run
    cases = pl.read_parquet(out / "cases.parquet").filter(pl.col("case") == "blame_suite::runtime_drops_nan")
    (case,) = row_dicts(cases, "cases")
    controls = case["controls"]
    assert controls["onnx-ref"]["ran"] and controls["ort-cpu[opt=disable]"]["ran"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["comparisons"] == 4  # one result per case x requested candidate: controls are not results


TASK = SimpleNamespace(run_id="r", ref=SimpleNamespace(id="s::c"))


def _ok(backend, values, dtype=np.float32):
    return tensor_row(TASK, backend, "base", output="output", index=0, array=np.asarray(values, dtype=dtype))


def _case(**extra):
    return {
        "case": "s::c",
        "status": "ok",
        "stage": None,
        "message": None,
        "tolerances": {},
        "expect": None,
        "exporter": "dynamo",
        **extra,
    }


def test_a_present_control_is_never_asked_for():
    tensors = [_ok("torch", [1, 2, 3]), _ok("ort-cpu", [1, 2, 4]), _ok("ort-cpu[opt=disable]", [1, 2, 4])]
    context = RunContext("r", "torch", ["ort-cpu", "ort-cpu[opt=disable]"], {}, None)
    rows = {r["candidate"]: r for r in judge_case(_case(), tensors, context)}
    for name, row in rows.items():
        assert row["blame"] == f"{name} or exporter"
        reason = row["blame_reason"]
        assert "add an ort-cpu[opt=disable]" not in reason and "opt=disable]" not in reason.split("would separate")[-1]
    assert "other runtime settings" in rows["ort-cpu[opt=disable]"]["blame_reason"]


def _cast_input(values, output="output", cast="node_Cast_3"):
    return tensor_row(
        TASK,
        "cast_inputs:dynamo",
        "base",
        output=cast,
        array=np.asarray(values, dtype=np.float32),
        about={"to": 6, "output": output},
    )


def test_undefined_casts_blame_nobody():
    exports = {"dynamo": {"float_to_int_casts": ["node_Cast_3"], "dropped_inputs": []}}
    tensors = [
        _ok("torch", [1, -2147483648], np.int32),
        _ok("ort-cpu", [1, 2147483647], np.int32),
        _cast_input([1.0, 3e9]),
    ]
    context = RunContext("r", "torch", ["ort-cpu"], {}, None)
    (row,) = judge_case(_case(exports=exports), tensors, context)
    assert row["label"] == "mismatch" and row["blame"] == "none (undefined behaviour)"
    assert row["blame_rule"] == "undefined_cast"
    assert "node_Cast_3" in row["blame_reason"] and "1 of the 1 differing positions" in row["blame_reason"]


def test_a_cast_of_in_range_values_excuses_nothing():
    """The graph has a float-to-int Cast, but what it converts at the differing position is 2.0: defined."""
    exports = {"dynamo": {"float_to_int_casts": ["node_Cast_3"], "dropped_inputs": []}}
    tensors = [_ok("torch", [1, 2], np.int32), _ok("ort-cpu", [1, 3], np.int32), _cast_input([1.0, 2.0])]
    context = RunContext("r", "torch", ["ort-cpu"], {}, None)
    (row,) = judge_case(_case(exports=exports), tensors, context)
    assert row["label"] == "mismatch" and row["blame"] == "ort-cpu or exporter", row["evidence"]
    assert row["blame_rule"] == "one_runtime"  # not undefined_cast


def test_a_cast_with_nan_elsewhere_does_not_excuse_a_differing_in_range_position():
    exports = {"dynamo": {"float_to_int_casts": ["node_Cast_3"], "dropped_inputs": []}}
    tensors = [_ok("torch", [0, 2], np.int32), _ok("ort-cpu", [0, 3], np.int32), _cast_input([np.nan, 2.0])]
    (row,) = judge_case(_case(exports=exports), tensors, RunContext("r", "torch", ["ort-cpu"], {}, None))
    assert row["blame"] == "ort-cpu or exporter", row["evidence"]


def test_nan_on_the_candidate_only_is_not_blamed_on_torch():
    """Eager is a little off the oracle everywhere; the candidate is exact except for one NaN. The NaN is the
    largest error there is, so eager is not the one farther from float64."""
    truth = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float64)
    tensors = [
        _ok("torch", truth + 0.01),
        _ok("ort-cpu", [1.0, 2.0, np.nan, 4.0]),
        tensor_row(TASK, "torch-fp64", "base", output="output", index=0, array=truth),
    ]
    context = RunContext("r", "torch", ["ort-cpu"], {}, "torch-fp64")
    (row,) = judge_case(_case(), tensors, context)
    assert row["label"] == "nonfinite" and row["blame"] != "torch", row["evidence"]


def test_a_transform_that_makes_the_graph_invalid_is_blamed():
    exports = {"dynamo+fp16": {"invalidated_by": ["transform:fp16", "type mismatch in node X"]}}
    failed = tensor_row(TASK, "ort-cpu[transform=fp16]", "*", status="error", stage="session", message="bad type")
    context = RunContext("r", "torch", ["ort-cpu[transform=fp16]"], {}, None)
    (row,) = judge_case(_case(exports=exports), [_ok("torch", [1.0]), failed], context)
    assert row["label"] == "runtime_error" and row["blame"] == "transform:fp16"
    assert row["blame_rule"] == "invalidated_graph" and "ONNX checker rejects it" in row["blame_reason"]


def test_a_failing_named_transform_is_an_export_error_blamed_on_it():
    failed = tensor_row(
        TASK,
        "ort-cpu[transform=fp16]",
        "*",
        status="error",
        stage="transform:fp16",
        message="the graph transform failed: ValueError: already float16",
    )
    context = RunContext("r", "torch", ["ort-cpu[transform=fp16]"], {}, None)
    (row,) = judge_case(_case(), [_ok("torch", [1.0]), failed], context)
    assert row["label"] == "export_error" and row["blame"] == "transform:fp16"
