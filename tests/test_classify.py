import numpy as np
import pytest

from difftest.judge.classify import Pair, LABELS, classify
from difftest.judge.compare import default_tolerance, ulp_distance


def f32(values):
    return np.asarray(values, dtype=np.float32)


def test_exact_requires_identical_bits():
    a = f32([1.0, 2.0, np.nan])
    assert classify(a, a.copy()).label == "exact"
    assert classify(f32([0.0]), f32([-0.0])).label == "numeric"  # equal values, different bits


def test_numeric_within_default_float32_tolerance():
    ref = f32(np.linspace(-1, 1, 100))
    cand = ref + np.float32(3e-7)
    verdict = classify(ref, cand)
    assert verdict.label == "numeric" and verdict.passed
    assert verdict.metrics.max_abs == pytest.approx(3e-7, rel=0.3)
    assert "within rtol=1.3e-06, atol=1e-05" in verdict.evidence


def test_mismatch_counts_elements_and_names_the_worst():
    ref = f32(np.zeros((2, 3)))
    cand = ref.copy()
    cand[1, 2] = 0.5
    verdict = classify(ref, cand)
    assert verdict.label == "mismatch" and not verdict.passed
    assert verdict.metrics.mismatched == 1 and verdict.metrics.worst_index == (1, 2)
    assert "1 of 6 elements" in verdict.evidence and "[1, 2]" in verdict.evidence


def test_tolerance_override_turns_mismatch_into_numeric():
    ref, cand = f32([1.0]), f32([1.001])
    assert classify(ref, cand).label == "mismatch"
    assert classify(ref, cand, rtol=1e-2, atol=0).label == "numeric"


def test_shape():
    verdict = classify(f32(np.zeros((2, 3))), f32(np.zeros((3, 3))))
    assert verdict.label == "shape" and "(3, 3)" in verdict.evidence
    # Same size, values not a rearrangement: still a shape discrepancy.
    assert classify(f32(np.arange(6).reshape(2, 3)), f32(np.ones((3, 2)))).label == "shape"


def test_dtype_same_values():
    verdict = classify(np.arange(4, dtype=np.int64), np.arange(4, dtype=np.int32))
    assert verdict.label == "dtype" and verdict.passed
    assert "int32" in verdict.evidence and "int64" in verdict.evidence


def test_dtype_with_different_values_is_a_mismatch():
    verdict = classify(np.arange(4, dtype=np.int64), np.arange(1, 5, dtype=np.int32))
    assert verdict.label == "mismatch" and "dtype also differs" in verdict.evidence


def test_nonfinite_places_differ():
    verdict = classify(f32([1.0, np.nan, np.inf]), f32([1.0, 2.0, np.inf]))
    assert verdict.label == "nonfinite" and "NaN at 1 position" in verdict.evidence
    assert classify(f32([np.inf]), f32([-np.inf])).label == "nonfinite"


def test_integers_must_match_exactly():
    assert classify(np.array([1, 2]), np.array([1, 3])).label == "mismatch"
    assert default_tolerance(np.dtype(np.int64)) == (0.0, 0.0)


def test_empty_arrays_are_exact():
    assert classify(f32([]), f32([])).label == "exact"


def test_ulp_distance_across_zero_and_signs():
    a = f32([1.0, 0.0, -1.0])
    b = np.nextafter(a, f32([2.0, 1.0, -2.0]))
    assert ulp_distance(a, b).tolist() == [1, 1, 1]
    assert ulp_distance(f32([-0.0]), f32([0.0])).tolist() == [0]
    tiny = np.nextafter(np.float32(0), np.float32(1))
    assert ulp_distance(f32([-tiny]), f32([tiny])).tolist() == [2]
    d = np.array([1.0]), np.nextafter(np.array([1.0]), 2.0)
    assert ulp_distance(*d).tolist() == [1]


def test_every_label_has_pass_and_severity():
    assert {
        "exact",
        "numeric",
        "mismatch",
        "shape",
        "dtype",
        "nonfinite",
        "export_error",
        "runtime_error",
        "skipped",
        "crash",
        "timeout",
    } <= set(LABELS)


def test_oracle_turns_reduction_noise_into_numeric_but_not_a_real_error():
    rng = np.random.default_rng(0)
    oracle = rng.standard_normal(1000) * 100
    ref = (oracle + rng.standard_normal(1000) * 2e-4).astype(np.float32)
    cand = (oracle + rng.standard_normal(1000) * 3e-4).astype(np.float32)
    assert classify(ref, cand).label == "mismatch"  # beyond assert_close's float32 tolerance
    verdict = classify(ref, cand, oracle=oracle)
    assert verdict.label == "numeric" and "float64 oracle" in verdict.evidence
    wrong = (oracle * 1.001).astype(np.float32)
    verdict = classify(ref, wrong, oracle=oracle)
    assert verdict.label == "mismatch" and "RMSE vs float64 oracle" in verdict.evidence


def test_nondeterminism_is_the_references_spread_never_the_candidates():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(500).astype(np.float32)
    again = (base + 1e-3 * rng.standard_normal(500)).astype(np.float32)
    cand = (base + 1e-3 * rng.standard_normal(500)).astype(np.float32)
    verdict = classify(base, cand, reference_reruns=[again])  # eager itself varies that much
    assert verdict.label == "nondeterministic" and "reference differs from its own rerun" in verdict.evidence
    # A candidate that varies by as much as it is wrong (fresh noise on every run) has no excuse in its own spread.
    assert "candidate_reruns" not in Pair.__dataclass_fields__
    assert classify(base, cand).label == "mismatch"


def test_layout_names_the_shift():
    ref = np.zeros((1, 9), np.float32)
    ref[0, 1:6] = [1, 2, 3, 4, 5]
    verdict = classify(ref, np.roll(ref, 2, axis=1))
    assert verdict.label == "layout" and "reference.roll(2, dim=1)" in verdict.evidence
    assert not verdict.passed


def test_nonfinite_says_whether_oracle_is_finite():
    verdict = classify(f32([1.0, 2.0]), f32([np.nan, 2.0]), oracle=np.array([1.0, 2.0]))
    assert verdict.label == "nonfinite" and "oracle is finite at 1 of these 1" in verdict.evidence


def test_argmax_ties_need_the_values():
    from difftest.judge.ties import RankedValues

    values = f32([[1.0, 3.0, 3.0]])
    ranked = RankedValues(values, "ArgMax", 1, False)
    assert classify(np.array([1]), np.array([2]), ranked=ranked).label == "tie_break"
    assert classify(np.array([1]), np.array([0]), ranked=ranked).label == "mismatch"
    assert classify(np.array([1]), np.array([2])).label == "mismatch"  # without values, no benefit of the doubt


def test_long_sum_within_the_summation_bound_is_numeric_and_says_so():
    import json

    rng = np.random.default_rng(0)
    x = (rng.random((2, 1 << 16)) + 1).astype(np.float32)
    exact = np.cumsum(x.astype(np.float64), axis=-1)
    sequential = np.cumsum(x, axis=-1, dtype=np.float32)  # float32 sequential: drifts far beyond rtol
    eager = exact.astype(np.float32)
    magnitude = np.cumsum(np.abs(x), axis=-1, dtype=np.float32)
    meta = json.loads(json.dumps({"op": "CumSum", "n": 1 << 16, "axis": 1, "reverse": 0, "exclusive": 0}))
    verdict = classify(eager, sequential, oracle=exact, accumulation=(magnitude, meta))
    assert verdict.label == "numeric" and verdict.rule == "summation bound", verdict.evidence
    assert "λ·√n·u·Σ|x|" in verdict.evidence and "n = 65536" in verdict.evidence


def test_off_by_one_prefix_sum_is_beyond_the_bound():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 4096)) + 50).astype(np.float32)
    exact = np.cumsum(x.astype(np.float64), axis=-1)
    exclusive = np.concatenate([np.zeros((2, 1)), exact[:, :-1]], axis=-1).astype(np.float32)
    magnitude = np.cumsum(np.abs(x), axis=-1)
    meta = {"op": "CumSum", "n": 4096, "axis": 1, "reverse": 0, "exclusive": 0}
    verdict = classify(exact.astype(np.float32), exclusive, oracle=exact, accumulation=(magnitude, meta))
    assert verdict.label == "mismatch" and "exceed" in verdict.evidence and "summation" in verdict.evidence


def test_unordered_topk_compares_rows_as_sets():
    reference = np.array([[0.9, 0.5, 0.3], [2.0, 1.0, 0.0]], dtype=np.float32)
    candidate = np.array([[0.3, 0.9, 0.5], [0.0, 2.0, 1.0]], dtype=np.float32)
    assert classify(reference, candidate, unordered_axis=-1).label == "tie_break"
    wrong = candidate.copy()
    wrong[0, 0] = 0.4
    assert classify(reference, wrong, unordered_axis=-1).label != "tie_break"


def test_ill_conditioned_inputs_numeric_when_both_sides_are_about_as_far_from_float64():
    rng = np.random.default_rng(2)
    oracle = rng.standard_normal(256)
    reference = (oracle + rng.standard_normal(256) * 1e-3).astype(np.float32)  # eager far from float64
    candidate = (oracle + rng.standard_normal(256) * 1e-3).astype(np.float32)  # about as far
    verdict = classify(reference, candidate, oracle=oracle)
    assert verdict.label == "numeric" and "ill-conditioned" in verdict.evidence
    far = (oracle + rng.standard_normal(256) * 1e-1).astype(np.float32)  # 100x farther: a finding
    assert classify(reference, far, oracle=oracle).label == "mismatch"
