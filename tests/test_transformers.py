"""A Hugging Face model end to end: a DynamicCache as an input (its tensors become named graph inputs) and the
grown cache in the outputs (flattened into named outputs), each judged against eager."""

import polars as pl
import pytest

pytest.importorskip("transformers")

from difftest.cli import main

CASE = "hf_gpt2_cache_suite::gpt2_decode_step"
CACHE = [f"cache_layers_{i}_{kv}" for i in range(2) for kv in ("keys", "values")]


@pytest.fixture(scope="module")
def run(tmp_path_factory, request):
    out = tmp_path_factory.mktemp("hf") / "run"
    suite = request.path.parent / "data" / "hf_gpt2_cache_suite.py"
    code = main(
        ["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), "--jobs", "1", "--localize-budget", "0"]
    )
    return code, out


def test_the_cache_is_named_inputs_and_outputs(run):
    code, out = run
    assert code == 0
    case = pl.read_parquet(out / "cases.parquet").filter(pl.col("case") == CASE).to_dicts()[0]
    assert case["status"] == "ok", case["message"]
    assert case["exporter"] == "dynamo"
    assert case["inputs"] == ["input_ids", "attention_mask", *CACHE]
    assert set(CACHE) <= set(case["graph_inputs"]), case["graph_inputs"]  # fed at run time, not baked in
    assert not case["dropped_inputs"]
    assert case["outputs"] == ["output_logits", *(f"output_{name}" for name in CACHE)]


def test_every_cache_output_is_judged_and_agrees(run):
    _, out = run
    rows = pl.read_parquet(out / "comparisons.parquet").filter(
        (pl.col("case") == CASE) & (pl.col("candidate") == "ort-cpu")
    )
    judged = {(r["probe"], r["output"]): r for r in rows.to_dicts()}
    for probe in ("base", "alt", "shape"):
        for output in ["output_logits", *(f"output_{name}" for name in CACHE)]:
            row = judged[(probe, output)]
            assert row["label"] in ("exact", "numeric") and row["passed"], (probe, output, row["evidence"])


def test_the_cache_grew_by_the_new_tokens_on_every_call(run):
    _, out = run
    tensors = pl.read_parquet(out / "tensors.parquet", columns=["case", "backend", "probe", "output", "shape"]).filter(
        (pl.col("case") == CASE) & (pl.col("output") == "output_cache_layers_1_values")
    )
    shapes = {(r["backend"], r["probe"]): r["shape"] for r in tensors.to_dicts()}
    # past 4 + new 2 on base; the shape probe grows past to 6 and new to 3 (and batch to 2)
    assert shapes[("torch", "base")] == [1, 2, 6, 8] and shapes[("ort-cpu", "base")] == [1, 2, 6, 8]
    assert shapes[("torch", "shape")] == [2, 2, 9, 8] and shapes[("ort-cpu", "shape")] == [2, 2, 9, 8]
    reruns = tensors.filter((pl.col("backend") == "torch") & (pl.col("probe") == "base"))
    assert len(reruns) >= 2 and len(set(map(tuple, reruns["shape"].to_list()))) == 1  # a fresh cache per call
