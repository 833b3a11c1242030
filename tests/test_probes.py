import numpy as np
import pytest

from difftest.suite.probes import ALL_PROBES, make_probes, parse_probes


def feeds():
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((3, 8)).astype(np.float32),
        "mask": (rng.random((3, 8)) > 0.5).astype(np.float32),
        "index": np.array([0, 5, 7], dtype=np.int64),
        "flag": np.array([True, False, True]),
    }


def test_base_only_when_nothing_else_selected():
    assert list(make_probes(feeds(), ["base"])) == ["base"]


def test_alt_changes_values_keeps_shapes_and_value_sets():
    base = feeds()
    alt = make_probes(base, ["base", "alt"])["alt"]
    assert {k: v.shape for k, v in alt.items()} == {k: v.shape for k, v in base.items()}
    assert not np.array_equal(alt["x"], base["x"])
    assert set(np.unique(alt["mask"])) <= {0.0, 1.0}  # a mask stays a mask
    assert set(alt["index"]) <= {0, 5, 7}  # indices stay valid
    assert alt["flag"].dtype == np.bool_


def test_ties_have_repeats_and_ramp_has_none():
    probes = make_probes(feeds(), ["base", "ties", "ramp"])
    ties, ramp = probes["ties"]["x"], probes["ramp"]["x"]
    assert len(np.unique(ties)) < ties.size / 2
    assert len(np.unique(ramp)) == ramp.size
    assert np.abs(ramp - ties).max() < np.abs(np.diff(np.unique(ties))).min() / 2
    assert np.array_equal(probes["ties"]["index"], feeds()["index"])


def test_shape_probe_changes_named_axes_together():
    base = {"a": np.zeros((2, 4), np.float32), "b": np.zeros((2, 3), np.float32)}
    shape = make_probes(base, ["base", "shape"], {"a": {0: "batch"}, "b": {0: "batch"}})["shape"]
    assert shape["a"].shape[0] == shape["b"].shape[0] == 3
    assert shape["a"].shape[1] == 4 and shape["b"].shape[1] == 3
    assert "shape" not in make_probes(base, ["base", "shape"], None)


def test_special_plants_nonfinite_values():
    special = make_probes(feeds(), ["base", "special"])["special"]["x"]
    assert np.isnan(special).any() and np.isposinf(special).any() and np.isneginf(special).any()


def test_probes_are_deterministic():
    a = make_probes(feeds(), list(ALL_PROBES))
    b = make_probes(feeds(), list(ALL_PROBES))
    assert all(np.array_equal(a[p][k], b[p][k], equal_nan=a[p][k].dtype.kind == "f") for p in a for k in a[p])


def test_custom_samples_fill_from_base():
    custom = make_probes(feeds(), ["base"], custom={"big": {"x": np.full((3, 8), 1e6, np.float32)}})["big"]
    assert custom["x"][0, 0] == 1e6 and np.array_equal(custom["mask"], feeds()["mask"])


def test_parse_probes():
    assert parse_probes("alt,ties") == ["base", "alt", "ties"]
    assert parse_probes(None) == list(ALL_PROBES)
    with pytest.raises(ValueError, match="unknown probe"):
        parse_probes("base,wobble")


def test_alt_keeps_counts_per_row_and_sorted_rows():
    from difftest.suite.probes import make_probes

    rng = np.random.default_rng(1)
    mask = rng.random((4, 10)) > 0.7
    lengths = np.sort(rng.integers(0, 50, size=(3, 6)), axis=1)  # sorted rows: offsets, lengths
    left_padded = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=np.int64)
    alt = make_probes({"mask": mask, "lengths": lengths, "pad": left_padded}, ["base", "alt"])["alt"]
    assert np.array_equal(alt["mask"].sum(1), mask.sum(1)) and not np.array_equal(alt["mask"], mask)
    assert (np.diff(alt["lengths"], axis=1) >= 0).all()
    assert sorted(map(tuple, alt["lengths"])) == sorted(map(tuple, lengths))
    assert (np.diff(alt["pad"], axis=1) >= 0).all() and alt["pad"].sum() == left_padded.sum()


def test_distribution_probes_move_floats_and_keep_integers():
    from difftest.suite.probes import DISTRIBUTION_PROBES, make_probes

    base = feeds()
    probes = make_probes(base, ["base", *DISTRIBUTION_PROBES])
    assert np.allclose(probes["negated"]["x"], -base["x"]) and np.allclose(probes["scaled_up"]["x"], 10 * base["x"])
    assert np.allclose(probes["scaled_down"]["x"], 0.1 * base["x"]) and probes["shifted"]["x"].mean() > base["x"].mean()
    assert all(np.array_equal(probes[p]["index"], base["index"]) for p in DISTRIBUTION_PROBES)


def test_counts_changes_every_masks_count_of_true_and_nothing_else():
    from difftest.suite.probes import DEFAULT_PROBES, SYNTHETIC_PROBES

    assert "counts" in DEFAULT_PROBES and "counts" in SYNTHETIC_PROBES
    mask = np.array([[True, True, False, False, False], [True, False, True, False, True]])
    padding = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=np.int64)  # an int attention mask, sorted rows
    x = np.arange(6, dtype=np.float32)
    probe = make_probes({"mask": mask, "padding": padding, "x": x}, ["base", "counts"])["counts"]
    assert (probe["mask"].sum(-1) != mask.sum(-1)).all() and probe["mask"].dtype == np.bool_
    assert (probe["padding"].sum(-1) != padding.sum(-1)).all() and probe["padding"].dtype == np.int64
    assert (np.diff(probe["padding"], axis=-1) <= 0).all()  # a padding mask stays a padding mask
    assert np.array_equal(probe["x"], x)  # only the counts move


def test_indices_draws_other_in_range_indices_keeping_distinct_and_sorted_rows():
    from difftest.suite.probes import DEFAULT_PROBES, SYNTHETIC_PROBES

    assert "indices" in DEFAULT_PROBES and "indices" in SYNTHETIC_PROBES
    ids = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    offsets = np.array([0, 2, 5, 7])
    length = np.array(4)
    probe = make_probes({"ids": ids, "offsets": offsets, "length": length}, ["base", "indices"])["indices"]
    drawn = probe["ids"]
    assert drawn.min() >= 0 and drawn.max() <= ids.max() and drawn.dtype == ids.dtype
    assert any(sorted(a) != sorted(b) for a, b in zip(drawn.tolist(), ids.tolist()))  # not a permutation
    assert len(set(drawn[1].tolist())) == 5  # a row of distinct indices stays distinct
    assert (np.diff(probe["offsets"]) >= 0).all() and probe["offsets"].max() <= 7
    assert probe["length"] == length  # a scalar (a size) is left alone


def test_frozen_inputs_treat_the_value_probes_like_alt():
    import json
    from types import SimpleNamespace

    from difftest.judge.verdicts import RunContext, judge_case
    from difftest.record.tables import tensor_row

    task = SimpleNamespace(run_id="r", ref=SimpleNamespace(id="s::c"))

    def row(backend, values, probe):
        return tensor_row(task, backend, probe, output="output", index=0, array=np.asarray(values, np.float32))

    tensors = [
        row("torch", [1.0], "base"),
        row("ort-cpu", [1.0], "base"),
        row("torch", [1.0], "alt"),
        row("ort-cpu", [1.0], "alt"),
        row("torch", [2.0], "counts"),
        row("ort-cpu", [1.0], "counts"),
    ]
    case = {
        "case": "s::c",
        "status": "ok",
        "stage": None,
        "message": None,
        "tolerances": {},
        "expect": None,
        "export_warnings": ["TracerWarning: Using len to get tensor shape might cause the trace to be incorrect"],
    }
    rows = {r["probe"]: r for r in judge_case(case, tensors, RunContext("r", "torch", ["ort-cpu"], {}, None))}
    assert rows["counts"]["label"] == "frozen_input", rows["counts"]["evidence"]
    assert json.dumps(rows["alt"]["label"]) == '"exact"'
