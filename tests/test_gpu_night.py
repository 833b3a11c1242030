"""What the first GPU night got wrong, each cause checked on CPU (stand-ins where the GPU itself is needed)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from difftest.backends import REGISTRY
from difftest.backends.onnxruntime import OrtCpu
from difftest.cli import main
from difftest.judge.expectations import expectation_for, outcomes


# --- expectations describe the exported graph, not every candidate ---------------------------------------------


def test_a_case_wide_expectation_applies_to_graph_candidates_only():
    labels, scope = expectation_for("tie_break", "ort-cuda")
    assert labels == ["tie_break"] and "runs the exported graph" in scope
    labels, scope = expectation_for("tie_break", "torch-cuda")
    assert labels is None and "runs no export" in scope
    assert expectation_for({"*": "export_error"}, "torch-cuda")[0] is None
    assert expectation_for({"*": "export_error"}, "ort-cpu[opt=disable]")[0] == ["export_error"]


def test_named_and_pattern_keys_apply_as_written_most_specific_first():
    expect = {"*cuda*": ["exact", "mismatch"], "torch-cuda*": "runtime_error", "ort-cpu*": "nonfinite"}
    assert expectation_for(expect, "torch-cuda")[0] == ["runtime_error"]
    assert expectation_for(expect, "torch-cuda[tf32=0]")[0] == ["runtime_error"]
    assert expectation_for(expect, "ort-cuda")[0] == ["exact", "mismatch"]
    assert expectation_for(expect, "ort-cpu[opt=disable]")[0] == ["nonfinite"]
    assert expectation_for({"torch-cuda": "mismatch", "*": "layout"}, "torch-cuda")[0] == ["mismatch"]


def test_a_key_naming_an_exporter_follows_the_exporter_a_plain_candidate_ran():
    """``--exporter torchscript`` makes plain ``ort-cpu`` run TorchScript's graph: the case's key for that exporter
    is what applies to it, not the ``"*"`` written for the default exporter."""
    expect = {"*": "export_error", "ort-cpu[exporter=torchscript]": ["exact", "numeric"]}
    labels, scope = expectation_for(expect, "ort-cpu", "torchscript")
    assert labels == ["exact", "numeric"] and "the exporter ort-cpu ran" in scope
    assert expectation_for(expect, "ort-cpu", "dynamo")[0] == ["export_error"]
    assert expectation_for(expect, "ort-cpu[exporter=torchscript]", "dynamo")[0] == ["exact", "numeric"]
    assert expectation_for({"ort-*[exporter=torchscript]": "layout"}, "ort-cuda", "torchscript")[0] == ["layout"]
    cases = [{"case": "s::c", "expect": expect, "exporter": "torchscript"}]
    comparisons = [
        {"case": "s::c", "candidate": "ort-cpu", "label": "numeric", "passed": True, "evidence": "e", "probe": "base"}
    ]
    (result,) = outcomes(cases, comparisons)
    assert result.status == "pass"


def test_outcomes_say_which_candidate_an_expectation_applied_to():
    cases = [{"case": "s::c", "expect": "layout"}]
    comparisons = [
        {"case": "s::c", "candidate": c, "label": label, "passed": label == "exact", "evidence": "e", "probe": "base"}
        for c, label in (("ort-cpu", "layout"), ("torch-cuda", "exact"))
    ]
    results = {o.candidate: o for o in outcomes(cases, comparisons)}
    assert results["ort-cpu"].status == "xfail" and "ort-cpu" in results["ort-cpu"].scope
    assert results["torch-cuda"].status == "pass" and "runs no export" in results["torch-cuda"].scope


# --- TF32: a precision switch, stood in for on CPU --------------------------------------------------------------


class Tf32StandIn(OrtCpu):
    """ONNX Runtime CPU with a 'tf32' setting that, when on (the default, as on CUDA), rounds float inputs to
    TF32's 10-bit mantissa before running: reduced precision by design, like TF32 matmul."""

    name = "ort-tf32sim"
    settings = OrtCpu.settings + ("tf32",)

    def run(self, session, feeds):
        if self.options.get("tf32", "1") != "0":
            feeds = {k: _tf32(v) for k, v in feeds.items()}
        return super().run(session, feeds)


def _tf32(array):
    if array.dtype != np.float32:
        return array
    bits = array.view(np.uint32) & np.uint32(0xFFFFE000)
    return bits.view(np.float32)


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))

    def forward(self, x):
        return self.net(x)


def test_a_gap_that_closes_without_tf32_is_numeric_blamed_on_tf32(tmp_path, monkeypatch):

    from difftest.suite.cases import CaseRef
    from difftest.worker.execute import run_task
    from difftest.worker.task import Task
    from difftest.judge.verdicts import RunContext, judge_case

    monkeypatch.setitem(REGISTRY, Tf32StandIn.name, Tf32StandIn)
    suite = tmp_path / "tf32_suite.py"
    suite.write_text(
        "import torch\nfrom difftest import case\nfrom test_gpu_night import Mlp\n\n"
        "@case(exporter='torchscript')\ndef mlp():\n"
        "    return Mlp().eval(), (torch.randn(16, 64, generator=torch.Generator().manual_seed(1)),)\n"
    )
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    ref = CaseRef(str(suite), "mlp")
    task = Task(
        ref=ref,
        run_id="r",
        backends=["torch", "torch-fp64", "ort-tf32sim"],
        reference="torch",
        exporter=None,
        artifacts_dir=str(tmp_path / "onnx"),
        reference_variants=["torch-fp64"],
        probes=["base"],
        reruns=0,
        control_budget=60,
    )
    result = run_task(task)
    case = result["case"]
    assert case["status"] == "ok", case["message"]
    controls = case["controls"]
    assert controls["ort-tf32sim[tf32=0]"]["ran"], controls
    rows = judge_case(case, result["tensors"], RunContext("r", "torch", ["ort-tf32sim"], {}, "torch-fp64"))
    (row,) = [r for r in rows if r["candidate"] == "ort-tf32sim"]
    assert row["label"] == "numeric" and row["blame"] == "tf32", row["evidence"]
    assert row["blame_rule"] == "tf32_control" and row["accepted_by"] == "tf32"
    assert "RMSE vs the float64 oracle" in row["evidence"]  # the numbers the reader weighs it by


# --- a candidate that must run, and cannot, is a configuration error --------------------------------------------


def test_require_makes_a_missing_gpu_candidate_an_error(tmp_path, data_dir, capsys):
    from difftest.backends.candidates import make

    if make("ort-cuda").unavailable_reason() is None:
        pytest.skip("a CUDA provider is present: the error path is not reachable here")
    code = main(
        [
            "run",
            str(data_dir / "passing_suite.py"),
            "--backends",
            "torch,ort-cpu,ort-cuda",
            "--require",
            "ort-cuda",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--require ort-cuda" in err and "CUDAExecutionProvider" in err


def test_require_must_name_requested_candidates(tmp_path, data_dir, capsys):
    code = main(
        [
            "run",
            str(data_dir / "passing_suite.py"),
            "--backends",
            "torch,ort-cpu",
            "--require",
            "ort-cuda",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2 and "not among --backends" in capsys.readouterr().err
