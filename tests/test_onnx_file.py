"""Bring your own ONNX: the file a user ships, judged against the eager model (``check(..., onnx=)``,
``Case(onnx=)``); a file that does not line up with the model is refused with both sides listed; difftest's own
export keeps the user's dynamic-axis names (``save_onnx``)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import difftest
from difftest.export import onnx_file


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))

    def forward(self, pixels):
        return self.body(pixels)


def _export(model, args, path, input_names, output_names, dynamic_axes=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            dynamo=False,
        )
    return path


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A classifier and the file a user's export script made of it (dynamic batch, the user's names)."""
    folder = tmp_path_factory.mktemp("shipped")
    model = Classifier().eval()
    x = torch.randn(3, 8)
    path = _export(model, (x,), folder / "model.onnx", ["pixels"], ["logits"], {"pixels": {0: "batch"}})
    return model, x, path


def _verdicts(result):
    return result.verdicts.to_dicts()


def test_a_correct_file_passes_and_the_tables_use_its_names(shipped):
    model, x, path = shipped
    result = difftest.check(model, (x,), onnx=path, backends=["ort-cpu", "onnx-ref"])
    assert result.passed, str(result)
    rows = _verdicts(result)
    assert {r["output"] for r in rows} == {"logits"}
    assert "shape" in {r["probe"] for r in rows if r["candidate"] == "ort-cpu"}  # the file's dynamic batch is probed
    assert all(r["label"] in ("exact", "numeric") for r in rows)


def test_a_file_with_one_weight_off_fails_and_blames_the_file(shipped, tmp_path):
    model, x, path = shipped
    proto = onnx.load(str(path))
    weight = next(i for i in proto.graph.initializer if len(i.dims) == 2)
    weight.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(weight) * 1.02).astype(np.float32), weight.name))
    bad = tmp_path / "quantized.onnx"
    onnx.save(proto, str(bad))
    result = difftest.check(model, (x,), onnx=bad, backends=["ort-cpu"])
    assert not result.passed
    rows = [r for r in _verdicts(result) if r["candidate"] == "ort-cpu"]
    assert {r["label"] for r in rows} == {"mismatch"}
    assert {r["blame"] for r in rows} == {"onnx-file"}
    assert {r["blame_rule"] for r in rows} == {"own_export"}
    # the control that says so: difftest's own export of the same model agrees with eager
    control = [r for r in _verdicts(result) if r["candidate"] == "ort-cpu[exporter=dynamo]"]
    assert control and all(r["passed"] for r in control)


def test_a_file_whose_inputs_do_not_line_up_is_refused_with_both_lists(tmp_path):
    class Two(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return input_ids.float() * attention_mask

    class One(torch.nn.Module):
        def forward(self, ids):
            return ids.float()

    path = _export(One(), (torch.ones(2, 3, dtype=torch.int64),), tmp_path / "one.onnx", ["tokens"], ["out"])
    result = difftest.check(
        Two(), (torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3)), onnx=path, backends=["ort-cpu"]
    )
    assert not result.passed
    (row,) = [r for r in _verdicts(result) if r["candidate"] == "ort-cpu"]
    assert row["label"] == "export_error" and row["stage"] == "definition"
    assert "tokens (int64 [2, 3])" in row["evidence"]
    assert "input_ids (int64 [2, 3])" in row["evidence"] and "attention_mask (float32 [2, 3])" in row["evidence"]


def test_a_file_with_another_input_dtype_is_refused(tmp_path):
    model = Classifier().eval()
    path = _export(
        model.double(), (torch.randn(2, 8, dtype=torch.float64),), tmp_path / "f64.onnx", ["pixels"], ["logits"]
    )
    result = difftest.check(Classifier().eval(), (torch.randn(2, 8),), onnx=path, backends=["ort-cpu"])
    (row,) = [r for r in _verdicts(result) if r["candidate"] == "ort-cpu"]
    assert row["label"] == "export_error"
    assert "'pixels' is float64 in the file, the model's 'pixels' is float32" in row["evidence"]


def test_inputs_named_otherwise_are_matched_by_position_and_outputs_by_name_in_any_order(tmp_path):
    class Pair(torch.nn.Module):
        def forward(self, a, b):
            return {"sum": a + b, "product": a * b}

    class Swapped(torch.nn.Module):  # what an export script made: other input names, outputs in another order
        def forward(self, left, right):
            return left * right, left + right

    a, b = torch.randn(2, 3), torch.randn(2, 3)
    path = _export(Swapped(), (a, b), tmp_path / "pair.onnx", ["left", "right"], ["product", "sum"])
    result = difftest.check(Pair(), (a, b), onnx=path, backends=["ort-cpu"], output_names=["sum", "product"])
    assert result.passed, str(result)
    assert {r["output"] for r in _verdicts(result)} == {"sum", "product"}


def test_binding_names_both_sides_when_counts_differ():
    proto = onnx.load_from_string(_model_bytes(["x"], ["y"]))
    with pytest.raises(onnx_file.OnnxFileError) as raised:
        onnx_file.bind(
            proto,
            ["x", "y", "z"],
            {n: np.zeros((2,), np.float32) for n in "xyz"},
            ["out0", "out1"],
            [np.zeros(2, np.float32)] * 2,
        )
    message = str(raised.value)
    assert "The file's outputs: y (float32 [2])" in message and "The model's outputs: out0" in message


def _model_bytes(inputs, outputs):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Identity", [inputs[0]], [out]) for out in outputs]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(i, TensorProto.FLOAT, [2]) for i in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2]) for o in outputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_exporter_file_without_a_file_says_what_to_do():
    result = difftest.check(Classifier().eval(), (torch.randn(2, 8),), backends=["ort-cpu[exporter=file]"])
    (row,) = [r for r in _verdicts(result) if r["candidate"] == "ort-cpu[exporter=file]"]
    assert row["label"] == "export_error" and "onnx='model.onnx'" in row["evidence"]


def test_own_exports_keep_the_users_dynamic_axis_names(tmp_path):
    class Encoder(torch.nn.Module):
        def forward(self, tokens, mask):
            return (tokens * mask.unsqueeze(-1)).sum(1)

    target = tmp_path / "encoder.onnx"
    result = difftest.check(
        Encoder(),
        (torch.randn(2, 5, 4), torch.ones(2, 5)),
        backends=["ort-cpu"],
        dynamic_axes={"tokens": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}},
        save_onnx=target,
    )
    assert result.passed, str(result)
    assert result.saved_onnx == target
    proto = onnx.load(str(target))
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(proto.graph.input) + list(proto.graph.output)
    }
    assert dims["tokens"] == ["batch", "seq", 4] and dims["mask"] == ["batch", "seq"]
    assert dims["output"] == ["batch", 4]


def test_name_dynamic_axes_keeps_a_symbol_two_names_would_share():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["s0"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["s0"]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["s0"])],
    )
    proto = helper.make_model(graph)
    notes = onnx_file.name_dynamic_axes(proto, {"a": {0: "batch"}, "b": {0: "rows"}})
    assert [d.dim_param for d in proto.graph.output[0].type.tensor_type.shape.dim] == ["batch"]
    assert notes and "'batch' and 'rows' are one size" in notes[0]


def test_a_suite_case_names_its_file_beside_the_suite(shipped, tmp_path):
    import shutil

    import polars as pl

    from difftest.cli import main

    model, x, path = shipped
    shutil.copyfile(path, tmp_path / "model.onnx")
    torch.save({"model": model.state_dict(), "x": x}, tmp_path / "weights.pt")
    (tmp_path / "shipped_suite.py").write_text(
        "import torch\nfrom difftest import case\nfrom test_onnx_file_model import Classifier\n\n"
        "@case(onnx='model.onnx')\ndef classifier():\n"
        "    saved = torch.load(__file__.replace('shipped_suite.py', 'weights.pt'))\n"
        "    model = Classifier().eval()\n    model.load_state_dict(saved['model'])\n"
        "    return model, (saved['x'],)\n"
    )
    (tmp_path / "test_onnx_file_model.py").write_text(
        "import torch\n\nclass Classifier(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))\n\n"
        "    def forward(self, pixels):\n        return self.body(pixels)\n"
    )
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "shipped_suite.py"), "--backends", "torch,ort-cpu", "--out", str(out)]) == 0
    cases = pl.read_parquet(out / "cases.parquet").to_dicts()
    assert cases[0]["exporter"] == "file" and cases[0]["outputs"] == ["logits"]


def test_a_file_that_declares_batch_dynamic_but_fixed_it_inside_fails_on_other_sizes(tmp_path):
    """The export script traced a reshape to the example's batch (2) and still declared batch dynamic: the file
    passes on the example and must fail on the shape probe, never pass."""

    class Generic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.fc = torch.nn.Linear(12, 3)

        def forward(self, image):
            return self.fc(image.flatten(1))

    class Traced(Generic):
        def forward(self, image):
            return self.fc(image.reshape(2, 12))

    model, x = Generic().eval(), torch.randn(2, 3, 4)
    path = _export(Traced().eval(), (x,), tmp_path / "traced.onnx", ["image"], ["output"], {"image": {0: "batch"}})
    result = difftest.check(model, (x,), onnx=path, backends=["ort-cpu"])
    assert not result.passed
    rows = {r["probe"]: r for r in _verdicts(result) if r["candidate"] == "ort-cpu"}
    assert rows["base"]["passed"]
    assert not rows["shape"]["passed"]
