"""ONNX test folders as cases: the recorded reference, user folders, and hostile or broken files."""

import os
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import TensorProto, helper, numpy_helper

from difftest.cli import main
from difftest.suite.onnx_tests import OnnxTestError, load


def add_model(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def write_test(folder: Path, expected_offset: float = 0.0, model: onnx.ModelProto | None = None) -> Path:
    weight = np.full((2, 3), 0.5, np.float32)
    folder.mkdir(parents=True)
    onnx.save(model or add_model(weight), str(folder / "model.onnx"))
    data = folder / "test_data_set_0"
    data.mkdir()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (data / "input_0.pb").write_bytes(numpy_helper.from_array(x).SerializeToString())
    (data / "output_0.pb").write_bytes(numpy_helper.from_array(x + weight + expected_offset).SerializeToString())
    return folder


def external_model(location: str) -> onnx.ModelProto:
    model = add_model(np.full((2, 3), 0.5, np.float32))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return model


def run(target: Path, out: Path) -> dict[str, dict]:
    main(["run", str(target), "--backends", "torch,ort-cpu", "--out", str(out)])
    rows = pl.read_parquet(out / "comparisons.parquet").filter(pl.col("candidate") == "ort-cpu").to_dicts()
    return {r["case"].split("::")[1]: r for r in rows}


def test_user_folder_runs_against_recorded_outputs(tmp_path):
    write_test(tmp_path / "tests" / "good")
    write_test(tmp_path / "tests" / "off_by_one", expected_offset=1.0)
    rows = run(tmp_path / "tests", tmp_path / "out")
    assert rows["good"]["label"] == "exact" and rows["good"]["reference"] == "recorded"
    assert rows["off_by_one"]["label"] == "mismatch"
    cases = pl.read_parquet(tmp_path / "out" / "cases.parquet").to_dicts()
    assert {c["reference"] for c in cases} == {"recorded"}


def test_single_test_folder_is_a_target(tmp_path):
    folder = write_test(tmp_path / "suite" / "only")
    rows = run(folder, tmp_path / "out")
    assert list(rows) == ["only"] and rows["only"]["label"] == "exact"


def test_missing_and_malformed_pb_name_the_file_and_spare_the_rest(tmp_path):
    root = tmp_path / "tests"
    write_test(root / "fine")
    missing = write_test(root / "missing")
    (missing / "test_data_set_0" / "output_0.pb").unlink()
    malformed = write_test(root / "malformed")
    (malformed / "test_data_set_0" / "input_0.pb").write_bytes(b"\xff\xfe not a tensor")
    rows = run(root, tmp_path / "out")
    assert rows["fine"]["label"] == "exact"
    assert rows["missing"]["label"] == "export_error" and "output_0.pb: missing" in rows["missing"]["evidence"]
    assert rows["malformed"]["label"] == "export_error"
    assert "input_0.pb: not a serialized TensorProto" in rows["malformed"]["evidence"]


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(np.zeros(6, np.float32).tobytes())
    folder = write_test(tmp_path / "t" / "hostile", model=external_model(location))
    with pytest.raises(OnnxTestError, match="outside the model's folder"):
        load(folder)


def test_external_data_symlink_out_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.zeros(6, np.float32).tobytes())
    folder = write_test(tmp_path / "t" / "linked", model=external_model("weights.bin"))
    os.symlink(tmp_path / "secret.bin", folder / "weights.bin")
    with pytest.raises(OnnxTestError, match="symlink out"):
        load(folder)


def test_external_data_inside_the_folder_is_read(tmp_path):
    folder = write_test(tmp_path / "t" / "inside", model=external_model("weights.bin"))
    (folder / "weights.bin").write_bytes(np.full(6, 0.5, np.float32).tobytes())
    test = load(folder)
    assert test.input_names == ["x"] and len(test.data_sets) == 1


def test_hostile_folder_in_a_run_is_a_verdict(tmp_path):
    root = tmp_path / "tests"
    write_test(root / "fine")
    write_test(root / "hostile", model=external_model("../../../etc/passwd"))
    rows = run(root, tmp_path / "out")
    assert rows["fine"]["label"] == "exact"
    assert rows["hostile"]["label"] == "export_error" and "refusing to read it" in rows["hostile"]["evidence"]


def test_onnx_package_suite_declares_its_folders():
    from difftest.suite.discover import collect

    ids = [ref.id for ref, _ in collect([str(Path(__file__).parents[1] / "suites" / "onnx_backend.py")])]
    assert len(ids) > 100 and "onnx_backend::light_resnet50" in ids
