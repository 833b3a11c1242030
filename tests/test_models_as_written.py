"""Models as people deploy them: caches and containers in and out, masks, names, optional packages."""

import json
import subprocess
import sys

import polars as pl
import pytest

from difftest.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir_module):
    out = tmp_path_factory.mktemp("written") / "run"
    code = main(
        [
            "run",
            str(data_dir_module / "models_as_written_suite.py"),
            "--backends",
            "torch,ort-cpu",
            "--out",
            str(out),
            "--jobs",
            "2",
            "--localize-budget",
            "0",
        ]
    )
    return code, out


@pytest.fixture(scope="module")
def data_dir_module():
    from pathlib import Path

    return Path(__file__).parent / "data"


def _rows(out):
    comparisons = pl.read_parquet(out / "comparisons.parquet").filter(pl.col("candidate") == "ort-cpu")
    return {r["case"].split("::")[1]: r for r in comparisons.filter(pl.col("probe") != "ties").to_dicts()}


def _cases(out):
    return {r["name"]: r for r in pl.read_parquet(out / "cases.parquet").to_dicts()}


def test_a_cache_in_the_outputs_is_flattened_into_named_outputs(run):
    _, out = run
    for name in ("cache_in_and_out", "cache_in_and_out_dynamo"):
        case = _cases(out)[name]
        assert case["status"] == "ok", case["message"]
        assert "output_cache_layers_0_keys" in case["outputs"] and "output_cache_layers_0_values" in case["outputs"]
    labels = (
        pl.read_parquet(out / "comparisons.parquet")
        .filter(pl.col("case").str.contains("cache_in_and_out"))["label"]
        .unique()
        .to_list()
    )
    assert set(labels) <= {"exact", "numeric"}, labels


def test_tensors_inside_containers_are_inputs_and_every_stage_gets_a_fresh_copy(run):
    _, out = run
    case = _cases(out)["cache_in_and_out"]
    assert {"cache_layers_0_keys", "cache_layers_0_values"} <= set(case["inputs"])
    assert set(case["graph_inputs"]) >= {"cache_layers_0_keys", "cache_layers_0_values"}
    tensors = pl.read_parquet(out / "tensors.parquet").filter(
        (pl.col("case") == "models_as_written_suite::cache_in_and_out")
        & (pl.col("backend") == "torch")
        & (pl.col("probe") == "base")
        & (pl.col("output") == "output_cache_layers_0_keys")
    )
    assert tensors["shape"].to_list() == [[2, 4, 8], [2, 4, 8]]  # first run and rerun: the cache did not grow
    assert len(set(tensors["digest"].to_list())) == 1
    pairs = _cases(out)["tuple_and_dict_inputs"]
    assert pairs["inputs"] == ["pair_0", "pair_1", "extra_bias"]


def test_an_output_without_tensors_is_a_case_definition_error(run):
    _, out = run
    row = _rows(out)["output_without_tensors"]
    assert row["blame"] == "case" and "holding no tensors" in row["evidence"] and "'output_label'" in row["evidence"]


def test_a_difference_confined_to_padding_says_so(run):
    _, out = run
    rows = _rows(out)
    assert rows["padding_only_difference"]["label"] == "mismatch"
    assert "all 8 mismatching elements are at positions where mask is 0" in rows["padding_only_difference"]["evidence"]
    declared = rows["padding_declared_ignorable"]
    assert declared["passed"] and "declared ignorable by the case and not judged" in declared["evidence"]
    assert "8 of them beyond the tolerance" in declared["evidence"]
    # counts are of the 32 judged positions, not of all 40 (the 8 ignored ones hold the reference's values)
    assert "all 32 judged elements" in declared["evidence"] and "all 40" not in declared["evidence"]


def test_an_output_mask_that_matches_nothing_is_a_case_definition_error(run):
    _, out = run
    rows = _rows(out)
    wrong_name = rows["mask_names_no_output"]
    assert wrong_name["blame"] == "case" and "output_masks names output 'logits'" in wrong_name["evidence"]
    assert "'output'" in wrong_name["evidence"]
    misaligned = rows["mask_does_not_line_up"]
    assert (
        misaligned["blame"] == "case" and "does not line up with the output's shape [5, 2, 4]" in misaligned["evidence"]
    )


def test_a_missing_optional_package_skips_with_the_reason(run):
    code, out = run
    assert code == 0
    row = _rows(out)["needs_an_optional_package"]
    assert row["label"] == "skipped" and "no_such_package_for_difftest is not installed" in row["evidence"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"].get("skipped", 0) >= 1 and not summary["failures"]


def test_junit_times_are_per_candidate(run):
    import xml.etree.ElementTree as ET

    _, out = run
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    total = sum(float(t.get("time")) for t in suite.findall("testcase"))
    assert total <= float(suite.get("time")) * 2  # candidates' own times, not the whole case's time each


def test_a_suite_importing_another_suite_declares_only_its_own_cases(tmp_path):
    (tmp_path / "base_suite.py").write_text(
        "import torch\nfrom difftest import case\n\n@case()\ndef one():\n    return torch.nn.Identity(), "
        "(torch.ones(1),)\n"
        "\n@case()\ndef two():\n    return torch.nn.Identity(), (torch.ones(1),)\n"
    )
    (tmp_path / "extra_suite.py").write_text(
        "import base_suite as S\nimport torch\nfrom difftest import case\n\n@case()\ndef three():\n"
        "    return torch.nn.Identity(), (torch.ones(1),)\n"
    )
    listed = subprocess.run(
        [sys.executable, "-m", "difftest", "list", str(tmp_path / "extra_suite.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == ["extra_suite::three"]


def test_k_matches_case_names_not_the_file_name(tmp_path):
    (tmp_path / "dyn.py").write_text(
        "import torch\nfrom difftest import case\n\n@case()\ndef dynamic_batch():\n"
        "    return torch.nn.Identity(), (torch.ones(1),)\n\n@case()\ndef static():\n"
        "    return torch.nn.Identity(), (torch.ones(1),)\n"
    )
    listed = subprocess.run(
        [sys.executable, "-m", "difftest", "list", str(tmp_path / "dyn.py"), "-k", "dyn"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == ["dyn::dynamic_batch"]
    listed = subprocess.run(
        [sys.executable, "-m", "difftest", "list", str(tmp_path / "dyn.py"), "-k", "dyn::st"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == ["dyn::static"]


def test_exporter_errors_speak_the_cases_names(tmp_path, capsys):
    (tmp_path / "names.py").write_text(
        "import torch\nfrom difftest import Case, case\n\nclass Fixed(torch.nn.Module):\n"
        "    def forward(self, input_features):\n        return input_features.reshape(2, 6)\n\n"
        "@case()\ndef fixed():\n    return Case(Fixed().eval(), (torch.ones(2, 6),),\n"
        "                dynamic_axes={'input_features': {0: 'batch'}})\n"
    )
    out = tmp_path / "run"
    main(
        [
            "run",
            str(tmp_path / "names.py"),
            "--backends",
            "torch,ort-cpu",
            "--out",
            str(out),
            "--probes",
            "base",
            "--localize-budget",
            "0",
        ]
    )
    printed = capsys.readouterr().out
    (case,) = pl.read_parquet(out / "cases.parquet").to_dicts()
    assert case["export_status"] == "error"
    assert "'live'" not in case["export_error"] and "input_features" in case["export_error"]
    assert "difftest/suite/model_io.py" not in case["export_error"] and "model_io.py" not in case["export_error"]
    fail_line = next(line for line in printed.splitlines() if "FAIL" in line)
    assert "export_error" in fail_line and "export failed" in fail_line  # the evidence's first line is shown


def test_output_names_that_sanitize_alike_stay_apart():
    import torch

    from difftest.suite.model_io import flatten_outputs

    names, tensors = flatten_outputs({"a-b": torch.zeros(1), "a_b": torch.ones(1), "a.b": torch.ones(2)})
    assert names == ["output_a_b", "output_a_b_1", "output_a_b_2"] and [t.numel() for t in tensors] == [1, 1, 2]
