"""``difftest run model.onnx``: a bare ONNX file, runtime against runtime (``onnx-ref`` the reference, the graph in
float64 the oracle), inputs generated from the graph's declared types and shapes or loaded with ``--inputs``."""

from __future__ import annotations

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import TensorProto, helper, numpy_helper

from difftest.cli import main, onnx_inputs
from difftest.export.float64 import widened
from difftest.worker.bare_onnx import reference_for


def _classifier(path, scale=1.0, logits=False):
    """pixels [batch, 4] -> softmax(pixels @ W) and its argmax (and the logits): a small graph a user might ship."""
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((4, 3)) * scale).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["pixels", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"]),
            helper.make_node("ArgMax", ["logits"], ["top"], axis=-1, keepdims=0),
        ],
        "classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("top", TensorProto.INT64, ["batch"]),
        ]
        + ([helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])] if logits else []),
        initializer=[numpy_helper.from_array(weight, "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _run(tmp_path, *args):
    out = tmp_path / "run"
    code = main(["run", *map(str, args), "--out", str(out), "--localize-budget", "0"])
    return code, pl.read_parquet(out / "comparisons.parquet"), pl.read_parquet(out / "cases.parquet"), out


def test_a_bare_file_with_generated_inputs_is_judged_against_onnx_ref(tmp_path):
    model = _classifier(tmp_path / "classifier.onnx")
    code, comparisons, cases, out = _run(tmp_path, model, "--backends", "torch,ort-cpu")
    assert code == 0
    judged = comparisons.filter(pl.col("candidate") == "ort-cpu")
    assert set(judged["reference"]) == {"onnx-ref"}
    assert set(judged["probe"]) == {"base", "alt", "shape"}  # the symbolic batch is probed at another size
    assert set(judged["output"]) == {"probs", "top"} and judged["passed"].all()
    (case,) = cases.to_dicts()
    assert any("'batch' is symbolic: fed 1" in w or "(batch) is symbolic: fed 1" in w for w in case["warnings"])
    tensors = pl.read_parquet(out / "tensors.parquet")
    oracle = tensors.filter((pl.col("backend") == "onnx-ref-fp64") & (pl.col("output") == "probs"))
    assert len(oracle) and set(oracle["dtype"]) == {"float64"}  # the oracle ran the graph in float64


def test_a_bare_file_with_loaded_inputs_and_shapes(tmp_path):
    model = _classifier(tmp_path / "classifier.onnx")
    np.savez(tmp_path / "inputs.npz", pixels=np.linspace(-1, 1, 28, dtype=np.float32).reshape(7, 4))
    code, comparisons, _, _ = _run(tmp_path, model, "--backends", "torch,ort-cpu", "--inputs", tmp_path / "inputs.npz")
    assert code == 0
    judged = comparisons.filter(pl.col("candidate") == "ort-cpu")
    assert set(judged["probe"]) == {"base"} and judged["passed"].all()
    assert judged.filter(pl.col("output") == "top")["count"].to_list() == [7]


def test_a_runtime_that_differs_from_the_spec_fails_and_is_blamed(tmp_path):
    # fp16 weights move the logits far beyond float32 tolerance, and the float64 oracle says whose fault it is
    model = _classifier(tmp_path / "classifier.onnx", logits=True)
    code, comparisons, _, _ = _run(
        tmp_path,
        model,
        "--backends",
        "torch,onnx-ref,ort-cpu,ort-cpu[transform=fp16]",
        "--input-shapes",
        "pixels:8x4",
        "--val-range",
        "[-1,1]",
    )
    assert code == 1
    plain = comparisons.filter(pl.col("candidate") == "ort-cpu")
    assert plain["passed"].all() and set(plain["reference"]) == {"onnx-ref"}
    (reference,) = comparisons.filter(pl.col("candidate") == "onnx-ref").to_dicts()
    assert reference["label"] == "skipped" and "this case's reference" in reference["evidence"]
    fp16 = comparisons.filter((pl.col("candidate") == "ort-cpu[transform=fp16]") & ~pl.col("passed"))
    assert len(fp16) and set(fp16["blame"]) == {"transform:fp16"}


def test_onnx_ref_is_the_reference_and_a_graph_it_cannot_run_falls_back_to_the_first_runtime(tmp_path):
    assert reference_for(["torch", "ort-cpu", "ort-cuda", "openvino"]) == "onnx-ref"
    # com.microsoft's FusedMatMul is an ONNX Runtime contrib op the specification's evaluator does not have
    graph = helper.make_graph(
        [helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain="com.microsoft", alpha=2.0)],
        "contrib",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    path = tmp_path / "contrib.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]),
        str(path),
    )
    code, comparisons, cases, _ = _run(tmp_path, path, "--backends", "torch,ort-cpu,ort-cpu[opt=disable]")
    assert code == 0
    judged = comparisons.filter(pl.col("candidate") == "ort-cpu[opt=disable]")
    assert set(judged["reference"]) == {"ort-cpu"} and judged["passed"].all() and len(judged) >= 2
    (case,) = cases.to_dicts()
    assert any(w.startswith("onnx-ref cannot run this graph") for w in case["warnings"])


def test_input_options_are_checked_against_the_graph(tmp_path, capsys):
    model = _classifier(tmp_path / "classifier.onnx")
    code, comparisons, _, _ = _run(tmp_path, model, "--backends", "torch,ort-cpu", "--input-shapes", "pixels:2x5")
    assert code == 1
    (row,) = comparisons.filter(pl.col("candidate") == "ort-cpu").to_dicts()
    assert row["label"] == "export_error" and "axis 1 is fixed to 4" in row["evidence"]
    with pytest.raises(Exception, match="expected NAME:DIMS"):
        onnx_inputs(["pixels"], [], None)


def test_a_python_target_that_is_neither_says_what_a_target_is(tmp_path, capsys):
    other = tmp_path / "model.txt"
    other.write_text("x")
    assert main(["run", str(other)]) == 2
    assert "an ONNX file (.onnx)" in capsys.readouterr().err


def test_widened_graph_is_float64_throughout():
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32([2.0]), "c")),
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xf", "c"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    wide = widened(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    from onnx.reference import ReferenceEvaluator

    (y,) = ReferenceEvaluator(wide).run(None, {"x": np.array([1 / 3, 2 / 3])})
    assert y.dtype == np.float64 and abs(y[0] - 2 / 3) < 1e-15
