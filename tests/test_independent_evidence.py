"""Verdicts that rest on evidence the candidate did not produce (issue 21, items 10, 12, 14, 15, 16), end to end."""

import json

import numpy as np
import polars as pl
import pytest

from difftest.cli import main

SUITE = "independent_evidence_suite"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from pathlib import Path

    out = tmp_path_factory.mktemp("evidence") / "run"
    code = main(
        [
            "run",
            str(Path(__file__).parent / "data" / f"{SUITE}.py"),
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


def _rows(out, name, candidate="ort-cpu"):
    comparisons = pl.read_parquet(out / "comparisons.parquet")
    return {
        (r["probe"], r["output"]): r
        for r in comparisons.filter(
            (pl.col("case") == f"{SUITE}::{name}") & (pl.col("candidate") == candidate)
        ).to_dicts()
    }


def _tensors(out, name):
    return pl.read_parquet(out / "tensors.parquet").filter(pl.col("case") == f"{SUITE}::{name}")


def test_every_case_meets_its_expectation(run):
    code, _ = run
    assert code == 0


def test_outputs_whose_names_collide_are_both_judged(run):
    _, out = run
    rows = _rows(out, "colliding_output_names")
    assert {o for _, o in rows} == {"output_a_b", "output_a_b_1"}
    assert all(r["label"] == "exact" for r in rows.values())


def test_the_oracle_starts_every_probe_from_the_factorys_model(run):
    """The forward counts its calls in a buffer: each probe of the float64 oracle must see count 1, as eager does."""
    from difftest.record.tables import decode

    _, out = run
    tensors = _tensors(out, "counts_its_calls").filter(pl.col("rerun") == 0).to_dicts()
    by = {(t["backend"], t["probe"]): decode(t) for t in tensors if t["output"] == "output"}
    probes = sorted({p for b, p in by if b == "torch"})
    assert len(probes) >= 3
    for probe in probes:
        np.testing.assert_allclose(by[("torch-fp64", probe)], by[("torch", probe)], rtol=1e-5, atol=1e-6)
    assert all(r["label"] == "exact" for r in _rows(out, "counts_its_calls").values())


@pytest.mark.parametrize("name", ["adds_uniform_noise", "flips_coins", "randint_masking"])
def test_a_model_that_samples_is_nondeterministic_by_eagers_other_seed(run, name):
    _, out = run
    judged = [r for r in _rows(out, name).values() if r["label"] != "invalid_probe"]
    assert judged and all(r["label"] == "nondeterministic" for r in judged), [r["evidence"] for r in judged]
    for row in judged:
        assert "another seed" in row["evidence"] and "within sampling error" in row["evidence"]
        assert row["passed"] and row["blame"] is None and row["blame_rule"] is None  # a warning, nobody to blame
    assert _tensors(out, name).filter(pl.col("backend") == "reseeded").height > 0


def test_a_sampling_graph_that_moves_the_distribution_is_a_mismatch(run):
    _, out = run
    rows = _rows(out, "noise_shifted_by_the_graph")
    assert rows and all(r["label"] == "mismatch" for r in rows.values())
    row = rows[("base", "output")]
    assert "not one of the same distribution" in row["evidence"] and "mean" in row["evidence"]
    assert row["blame"] not in ("torch", "none (undefined behaviour)")


def test_a_count_frozen_from_a_mask_is_caught_by_the_counts_probe(run):
    _, out = run
    rows = _rows(out, "mean_over_mask_count_frozen")
    assert rows[("alt", "output")]["passed"]  # alt keeps each row's count of True: it cannot tell
    assert rows[("counts", "output")]["label"] == "frozen_input"


def test_embedding_rows_frozen_by_a_trace_are_caught_by_the_indices_probe(run):
    _, out = run
    rows = _rows(out, "embedding_rows_frozen")
    assert rows[("alt", "output")]["passed"]  # a bag of rows: permuting the ids changes nothing
    assert rows[("indices", "output")]["label"] == "frozen_input"


def test_an_integer_fault_after_an_in_range_cast_is_not_undefined_behaviour(run):
    _, out = run
    row = _rows(out, "bucket_ids_off_by_one")[("base", "output")]
    assert row["label"] == "mismatch" and row["blame"] != "none (undefined behaviour)", row["evidence"]
    cast_rows = _tensors(out, "bucket_ids_off_by_one").filter(pl.col("backend").str.starts_with("cast_inputs:"))
    assert cast_rows.height > 0 and json.loads(cast_rows.to_dicts()[0]["about"])["to"] == 7
