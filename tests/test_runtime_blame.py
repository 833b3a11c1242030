"""Blame for the runtimes beyond ONNX Runtime, from the controls their backends declare: OpenVINO's inference
precision (``precision=f32``), torch.compile's ``aot_eager`` backend (Inductor against Dynamo), and ``torch-export``
(the program torch.export captured) telling the capture from the ONNX translation of a dynamo export."""

from types import SimpleNamespace

import numpy as np

from difftest.judge.verdicts import RunContext, judge_case
from difftest.judge.vocabulary import blame_kind
from difftest.record.tables import tensor_row

TASK = SimpleNamespace(run_id="r", ref=SimpleNamespace(id="s::c"))
TRUTH = [1.0, 2.0, 3.0, 4.0]


def _ok(backend, values, dtype=np.float32, providers=None):
    return tensor_row(TASK, backend, "base", output="output", index=0, array=np.asarray(values, dtype=dtype),
                      providers=providers)


def _case(**extra):
    return {"case": "s::c", "status": "ok", "stage": None, "message": None, "tolerances": "{}", "expect": None,
            "exporter": "dynamo", **extra}


def _judge(tensors, candidates):
    context = RunContext("r", "torch", candidates, {}, "torch-fp64")
    tensors = [_ok("torch", TRUTH), _ok("torch-fp64", TRUTH, np.float64), *tensors]
    return {r["candidate"]: r for r in judge_case(_case(), tensors, context)}


def test_openvino_bf16_default_is_named_with_both_distances_and_fails():
    bf16 = [1.0, 2.0078125, 3.015625, 3.984375]  # bf16 rounding of values off by a little
    rows = _judge([_ok("openvino", bf16, providers=["CPU (OpenVINO 2026.4.1)", "inference precision bf16"]),
                   _ok("openvino[precision=f32]", TRUTH)], ["openvino", "openvino[precision=f32]"])
    row = rows["openvino"]
    assert not row["passed"] and row["label"] == "mismatch"  # never counted as float noise
    assert row["blame"] == "precision:bf16" and row["blame_rule"] == "precision_control"
    assert blame_kind(row["blame"]) == "precision_mode"
    reason = row["blame_reason"]
    assert "precision=f32" in reason and "precision=bf16" in reason and "float64 oracle" in reason
    assert reason.count("precision=") >= 3  # both distances are named by the precision they were measured at


def test_openvino_failing_at_f32_too_is_not_blamed_on_the_precision():
    wrong = [1.0, 2.0, 3.0, 5.0]
    rows = _judge([_ok("openvino", wrong, providers=["CPU", "inference precision bf16"]),
                   _ok("openvino[precision=f32]", wrong), _ok("ort-cpu", TRUTH)],
                  ["openvino", "openvino[precision=f32]", "ort-cpu"])
    row = rows["openvino"]
    assert row["blame"] == "openvino" and row["blame_rule"] == "other_runtime"
    assert "Not precision: openvino[precision=f32] fails too" in row["blame_reason"]


def test_openvino_without_its_control_says_the_precision_is_not_ruled_out():
    rows = _judge([_ok("openvino", [1.0, 2.0, 3.0, 5.0])], ["openvino"])
    assert "precision=f32 is not ruled out" in rows["openvino"]["blame_reason"]


def test_torch_compile_inductor_against_dynamo():
    wrong = [1.0, 2.0, 3.0, 5.0]
    rows = _judge([_ok("torch-compile", wrong), _ok("torch-compile[backend=aot_eager]", TRUTH)],
                  ["torch-compile", "torch-compile[backend=aot_eager]"])
    assert rows["torch-compile"]["blame"] == "inductor" and rows["torch-compile"]["blame_rule"] == "compile_control"
    rows = _judge([_ok("torch-compile", wrong), _ok("torch-compile[backend=aot_eager]", wrong)],
                  ["torch-compile", "torch-compile[backend=aot_eager]"])
    assert rows["torch-compile"]["blame"] == "dynamo" and "aot_eager" in rows["torch-compile"]["blame_reason"]
    assert blame_kind("dynamo") == "graph" and blame_kind("inductor") == "runtime"


def test_torch_export_capture_against_onnx_translation():
    """Only the capture is wrong: torch-export computes what the ONNX candidate computes, so torch.export is blamed
    (today both were "exporter:dynamo"). Only the translation is wrong: the captured program agrees with eager, the
    graph (onnx-ref computes what ort-cpu computes) does not: the exporter, its reason naming the ONNX translation."""
    wrong = [1.0, 2.0, 3.0, 5.0]
    rows = _judge([_ok("ort-cpu", wrong), _ok("torch-export", wrong)], ["ort-cpu", "torch-export"])
    assert rows["ort-cpu"]["blame"] == "torch.export" and rows["ort-cpu"]["blame_rule"] == "capture_control"
    assert blame_kind("torch.export") == "graph"
    rows = _judge([_ok("ort-cpu", wrong), _ok("onnx-ref", wrong), _ok("torch-export", TRUTH)],
                  ["ort-cpu", "onnx-ref", "torch-export"])
    row = rows["ort-cpu"]
    assert row["blame"] == "exporter" and "ONNX translation" in row["blame_reason"], row["blame_reason"]
    assert "torch-export" in row["blame_reason"]
