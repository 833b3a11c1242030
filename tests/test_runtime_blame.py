"""Blame for the runtimes beyond ONNX Runtime, from the controls their backends declare: OpenVINO's inference
precision (``precision=f32``), torch.compile's ``aot_eager`` backend (Inductor against Dynamo), and ``torch-export``
(the program torch.export captured) telling the capture from the ONNX translation of a dynamo export."""

from types import SimpleNamespace

import numpy as np
import torch

from difftest.judge.verdicts import RunContext, judge_case
from difftest.judge.vocabulary import blame_kind
from difftest.record.tables import tensor_row

TASK = SimpleNamespace(run_id="r", ref=SimpleNamespace(id="s::c"))
TRUTH = [1.0, 2.0, 3.0, 4.0]


def _ok(backend, values, dtype=np.float32, providers=None):
    return tensor_row(
        TASK, backend, "base", output="output", index=0, array=np.asarray(values, dtype=dtype), providers=providers
    )


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


def _judge(tensors, candidates):
    context = RunContext("r", "torch", candidates, {}, "torch-fp64")
    tensors = [_ok("torch", TRUTH), _ok("torch-fp64", TRUTH, np.float64), *tensors]
    return {r["candidate"]: r for r in judge_case(_case(), tensors, context)}


BF16 = ["CPU (OpenVINO 2026.4.1)", "inference precision bf16"]


def test_openvino_bf16_within_bf16_tolerance_is_a_reduced_precision_warning_never_float_noise():
    bf16 = [1.0, 2.0078125, 3.015625, 3.984375]  # bf16 rounding of values off by a little
    rows = _judge(
        [_ok("openvino", bf16, providers=BF16), _ok("openvino[precision=f32]", TRUTH)],
        ["openvino", "openvino[precision=f32]"],
    )
    row = rows["openvino"]
    assert row["label"] == "reduced_precision" and row["passed"]  # a warning: not numeric, not a failure
    assert row["label"] != "numeric" and row["accepted_by"] == "reduced precision"
    assert row["blame"] == "precision:bf16" and row["blame_rule"] == "precision_control"
    assert blame_kind(row["blame"]) == "precision_mode"
    reason = row["blame_reason"]
    assert "precision=f32" in reason and "precision=bf16" in reason and "float64 oracle" in reason
    assert reason.count("precision=") >= 3  # both distances are named by the precision they were measured at
    assert "within bf16's own tolerance" in reason and "accurate at bf16" in reason
    assert "its default here" in reason


def test_openvino_bf16_beyond_bf16_tolerance_fails_and_says_not_accurate_at_its_default():
    far = [1.0, 2.0, 3.0, 4.5]  # 12% off on one value: no bf16 rounding explains that
    rows = _judge(
        [_ok("openvino", far, providers=BF16), _ok("openvino[precision=f32]", TRUTH)],
        ["openvino", "openvino[precision=f32]"],
    )
    row = rows["openvino"]
    assert not row["passed"] and row["label"] == "mismatch"
    assert row["blame"] == "precision:bf16"  # the precision makes the difference: f32 agrees
    assert row["blame_rule"] == "precision_control"
    assert "beyond bf16's own tolerance" in row["blame_reason"] and "not accurate at bf16" in row["blame_reason"]


def test_openvino_bf16_flipping_a_discrete_output_is_never_within_tolerance():
    def labels(backend, values, providers=None):
        return tensor_row(
            TASK,
            backend,
            "base",
            output="output",
            index=0,
            array=np.asarray(values, dtype=np.int64),
            providers=providers,
        )

    context = RunContext("r", "torch", ["openvino", "openvino[precision=f32]"], {}, "torch-fp64")
    tensors = [
        labels("torch", [1, 2]),
        labels("torch-fp64", [1, 2]),
        labels("openvino", [1, 3], BF16),
        labels("openvino[precision=f32]", [1, 2]),
    ]
    row = {r["candidate"]: r for r in judge_case(_case(), tensors, context)}["openvino"]
    assert not row["passed"] and row["blame"] == "precision:bf16" and row["label"] == "mismatch"
    assert row["blame_rule"] == "precision_control" and "a discrete output must be equal" in row["blame_reason"]


def test_precision_check_holds_values_near_zero_to_the_outputs_scale():
    from difftest.judge import precision

    truth = np.array([1e-4, 10.0, -10.0, 5.0])
    near_zero_off = truth + np.array([0.05, 0.0, 0.0, 0.0])  # 0.05 on a ~8 RMS output: bf16 rounding of its terms
    assert precision.check(near_zero_off, truth, 1.6e-2).within
    assert not precision.check(truth + np.array([0.0, 1.0, 0.0, 0.0]), truth, 1.6e-2).within
    nan_moved = truth.copy()
    nan_moved[1] = np.nan
    found = precision.check(nan_moved, truth, 1.6e-2)
    assert not found.within and "non-finite" in found.note


def test_openvino_failing_at_f32_too_is_not_blamed_on_the_precision():
    wrong = [1.0, 2.0, 3.0, 5.0]
    rows = _judge(
        [
            _ok("openvino", wrong, providers=["CPU", "inference precision bf16"]),
            _ok("openvino[precision=f32]", wrong),
            _ok("ort-cpu", TRUTH),
        ],
        ["openvino", "openvino[precision=f32]", "ort-cpu"],
    )
    row = rows["openvino"]
    assert row["blame"] == "openvino" and row["blame_rule"] == "other_runtime"
    assert "Not precision: openvino[precision=f32] fails too" in row["blame_reason"]


def test_openvino_without_its_control_says_the_precision_is_not_ruled_out():
    rows = _judge([_ok("openvino", [1.0, 2.0, 3.0, 5.0])], ["openvino"])
    assert "precision=f32 is not ruled out" in rows["openvino"]["blame_reason"]


def test_torch_compile_inductor_against_dynamo():
    wrong = [1.0, 2.0, 3.0, 5.0]
    rows = _judge(
        [_ok("torch-compile", wrong), _ok("torch-compile[backend=aot_eager]", TRUTH)],
        ["torch-compile", "torch-compile[backend=aot_eager]"],
    )
    assert rows["torch-compile"]["blame"] == "inductor" and rows["torch-compile"]["blame_rule"] == "compile_control"
    rows = _judge(
        [_ok("torch-compile", wrong), _ok("torch-compile[backend=aot_eager]", wrong)],
        ["torch-compile", "torch-compile[backend=aot_eager]"],
    )
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
    rows = _judge(
        [_ok("ort-cpu", wrong), _ok("onnx-ref", wrong), _ok("torch-export", TRUTH)],
        ["ort-cpu", "onnx-ref", "torch-export"],
    )
    row = rows["ort-cpu"]
    assert (row["blame"], row["blame_rule"]) == ("exporter", "spec_reference"), row["blame_reason"]
    assert "torch-export" in row["blame_reason"] and "ONNX translation" in row["blame_reason"]


class _ExportPath(torch.nn.Module):
    """A model with a code path taken only while exporting, written to be "export-friendly" and wrong (the
    pattern behind many export bugs: transformers' `is_torchdynamo_compiling()` branches, YOLO's export heads).
    ``when`` says under which export the path is taken: ``torch.export`` (every capture) or ``torch.onnx`` (only
    under torch.onnx.export, after torch.export has captured nothing different)."""

    def __init__(self, when: str):
        super().__init__()
        self.when = when

    def forward(self, x):
        exporting = torch.compiler.is_exporting() if self.when == "torch.export" else torch.onnx.is_in_onnx_export()
        if exporting:
            return torch.softmax(x, dim=0)  # the wrong axis
        return torch.softmax(x, dim=-1)


def _blame_of(result, candidate="ort-cpu"):
    rows = [r for r in result.verdicts.to_dicts() if r["candidate"] == candidate and not r["passed"]]
    assert rows, f"{candidate} was expected to fail: {result}"
    return rows[0]


def test_capture_wrong_blames_torch_export_end_to_end():
    """Only torch.export's capture is wrong (the model's export path is taken under every torch.export): the
    automatic torch-export control computes what ort-cpu computes, onnx-ref agrees with ort-cpu, so the blame is
    torch.export (the capture), not the ONNX translation and not the runtime."""
    import difftest

    result = difftest.check(
        _ExportPath("torch.export").eval(),
        (torch.randn(3, 4),),
        backends=["ort-cpu"],
        probes="base",
        exporter="dynamo",
        cache=False,
    )
    row = _blame_of(result)
    assert row["label"] == "mismatch"
    assert row["blame"] == "torch.export" and row["blame_rule"] == "capture_control", row
    assert "torch-export" in row["blame_reason"]


def test_translation_wrong_blames_the_onnx_export_not_the_capture_end_to_end():
    """Only the ONNX export is wrong (the path is taken under torch.onnx.export alone): torch-export agrees with
    eager, so the capture is ruled out and the blame is the exporter's ONNX step, with the reason saying so."""
    import difftest

    result = difftest.check(
        _ExportPath("torch.onnx").eval(),
        (torch.randn(3, 4),),
        backends=["ort-cpu"],
        probes="base",
        exporter="dynamo",
        cache=False,
    )
    row = _blame_of(result)
    assert row["label"] == "mismatch"
    assert row["blame"].startswith("exporter"), row
    assert row["blame"] != "torch.export"
    assert "torch-export" in row["blame_reason"] and "agrees with eager" in row["blame_reason"], row["blame_reason"]
    assert "ONNX translation" in row["blame_reason"]


def test_ort_trt_fp16_gap_that_closes_at_fp32_is_held_to_fp16s_own_tolerance():
    """ORT's TensorRT provider at fp16: its precision=fp32 control agrees, so the precision is blamed and the result
    held to fp16's tolerance (1e-3): a small gap is reduced_precision, a large one stays a mismatch."""
    fp16_close = [1.0, 2.001, 3.002, 3.998]
    rows = _judge(
        [_ok("ort-trt[precision=fp16]", fp16_close), _ok("ort-trt[precision=fp32]", TRUTH)],
        ["ort-trt[precision=fp16]", "ort-trt[precision=fp32]"],
    )
    row = rows["ort-trt[precision=fp16]"]
    assert row["label"] == "reduced_precision" and row["blame"] == "precision:fp16", row
    assert row["passed"] and row["blame_rule"] == "precision_control"
    assert "within fp16's own tolerance" in row["blame_reason"]
    rows = _judge(
        [_ok("ort-trt[precision=fp16]", [1.0, 2.0, 3.0, 4.2]), _ok("ort-trt[precision=fp32]", TRUTH)],
        ["ort-trt[precision=fp16]", "ort-trt[precision=fp32]"],
    )
    row = rows["ort-trt[precision=fp16]"]
    assert row["label"] == "mismatch" and row["blame"] == "precision:fp16" and not row["passed"]
    assert row["blame_rule"] == "precision_control" and "not accurate at fp16" in row["blame_reason"]
