"""Localization: the first divergent node, its source line, the one-node repro, and injected faults."""

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from difftest import Case
from difftest.suite.cases import CaseRef
from difftest.cli import main
from difftest.localize.divergence import diverges, localize
from difftest.record.tables import row_dicts

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from localize_bench import Fault, cast_fp16, epsilon, resize_mode, swap_pads  # noqa: E402


class Net(torch.nn.Module):
    """Conv, LayerNorm, Pad and Resize in a row: a site for every kind of injected fault."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = torch.nn.LayerNorm(6)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        y = self.norm(y)
        y = F.pad(y, (1, 2))
        return F.interpolate(y, scale_factor=2, mode="bilinear")


REF = CaseRef(str(Path(__file__)), "net")


def built_with(fault):
    torch.manual_seed(0)
    return Case(Net().eval(), (torch.randn(1, 3, 6, 6),), onnx_transform=fault, description="")


@pytest.mark.parametrize(
    "kind, op, change",
    [
        ("pad_swap", "Pad", swap_pads),
        ("epsilon", "LayerNormalization", epsilon),
        ("cast_fp16", "Conv", cast_fp16),
        ("resize_mode", "Resize", resize_mode),
    ],
)
def test_injected_fault_is_named_first(kind, op, change, tmp_path):
    fault = Fault(kind, op, 0, change)
    result = localize(REF, "ort-cpu", "torch", "base", tmp_path / "repro", built=built_with(fault))
    assert result.status == "found", result.reason
    assert result.culprit["name"] in fault.injected, (result.culprit, fault.injected)
    assert result.reproduced is True and (tmp_path / "repro" / "model.onnx").exists()
    assert "test_localize.py" in result.culprit["source"]


def test_an_unfaulted_model_has_nothing_to_localize():
    result = localize(REF, "ort-cpu", "torch", "base", built=built_with(None))
    assert result.status == "no_divergence"


def test_noise_is_not_divergence():
    import numpy as np

    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert not diverges(x, x + np.float32(1e-6) * x)[0]
    assert diverges(x, x * np.float32(1.01))[0]


def test_torchscript_candidate_against_eager_is_unsupported_with_a_reason():
    result = localize(REF, "ort-cpu[exporter=torchscript]", "torch", "base", built=built_with(None))
    assert result.status == "unsupported" and "dynamo" in result.reason


def test_cli_json_and_run_page(tmp_path, capsys):
    assert main(["localize", str(ROOT / "suites" / "pitfalls.py") + "::pad_order_swapped", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["culprit"]["op_type"] == "Pad" and found["culprit"]["name"] == "node_pad"
    assert "pitfalls.py" in found["culprit"]["source"]
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(ROOT / "suites" / "pitfalls.py") + "::pad_order_swapped",
                "--backends",
                "torch,ort-cpu",
                "--out",
                str(out),
                "--probes",
                "base",
                "--no-oracle",
            ]
        )
        == 0
    )
    page = next((out / "cases").glob("*.html")).read_text()
    assert "Where it diverges" in page and "node_pad" in page and "reproduces the discrepancy" in page


def test_localization_is_cached_and_its_bundle_copied_into_the_run(tmp_path):
    target = str(ROOT / "suites" / "pitfalls.py") + "::pad_order_swapped"
    args = [
        "run",
        target,
        "--backends",
        "torch,ort-cpu",
        "--probes",
        "base",
        "--no-oracle",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    import polars as pl

    runs = []
    for name in ("first", "second"):
        assert main([*args, "--out", str(tmp_path / name)]) == 0
        (case,) = row_dicts(pl.read_parquet(tmp_path / name / "cases.parquet"), "cases")
        runs.append(case["localization"]["ort-cpu"])
    assert runs[0]["culprit"]["name"] == runs[1]["culprit"]["name"] == "node_pad"
    assert not runs[0]["cached"] and runs[1]["cached"] is True
    assert runs[1]["repro"].startswith(str(tmp_path / "second")) and Path(runs[1]["repro"], "model.onnx").exists()


def _faulty_file(tmp_path, fault):
    """The user's own ONNX file of Net (a dynamo export, as a user's script would make it) with ``fault`` in it."""
    import onnx

    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(1, 3, 6, 6)
    program = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], output_names=["output"])
    proto = fault(program.model_proto)
    path = tmp_path / "shipped.onnx"
    onnx.save(proto, str(path))
    return model, x, path


def _file_localized(tmp_path, fault):
    """ort-cpu's localization in a check of Net against its own file with ``fault`` in it (the check fails)."""
    import polars as pl

    import difftest

    model, x, path = _faulty_file(tmp_path, fault)
    result = difftest.check(
        model, (x,), onnx=str(path), backends=["ort-cpu"], probes="base", localize_budget=120, out=tmp_path / "run"
    )
    assert not result.passed
    (case,) = row_dicts(pl.read_parquet(tmp_path / "run" / "cases.parquet"), "cases")
    return case["localization"]["ort-cpu"]


def test_a_users_file_is_localized_in_the_graph_that_ran_not_in_a_re_export(tmp_path):
    """The candidate ran the user's file: localization must look for the divergence in that file (eager's values
    mapped onto its values by name and producing operator, as difftest's own dynamo export names them), never in
    difftest's own re-export of the model, which has no fault and would say there is nothing to localize."""
    fault = Fault("pad_swap", "Pad", 0, swap_pads)
    found = _file_localized(tmp_path, fault)
    assert found["status"] == "found", found
    assert found["culprit"]["name"] in fault.injected, (found["culprit"], fault.injected)
    assert found["reference"] == "torch" and "mapped onto" in found["note"]  # eager's values, by name and operator


def test_a_users_file_with_no_names_in_common_is_localized_against_the_onnx_reference(tmp_path):
    """A file whose values were all renamed (post-processed, or made by another tool): eager's values cannot be
    mapped onto it, so the runtime is held against onnx-ref on the same file, and the result says what that can
    and cannot find (a fault in the file itself shows as no divergence between two runtimes)."""

    def renamed(model):
        names = {}
        for i, node in enumerate(model.graph.node):
            for j, out in enumerate(node.output):
                if out and out not in {o.name for o in model.graph.output}:
                    names[out] = f"v{i}_{j}"
        for node in model.graph.node:
            node.input[:] = [names.get(n, n) for n in node.input]
            node.output[:] = [names.get(n, n) for n in node.output]
        del model.graph.value_info[:]
        return Fault("pad_swap", "Pad", 0, swap_pads)(model)

    found = _file_localized(tmp_path, renamed)
    assert found["reference"] == "onnx-ref" and "cannot be mapped" in found["note"], found
    assert found["status"] == "no_divergence" and "in the graph itself" in found["reason"], found
