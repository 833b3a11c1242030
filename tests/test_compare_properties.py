"""Property-based tests: the comparison functions over random shapes, dtypes and special values."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from difftest.judge.classify import LABELS, classify
from difftest.judge.compare import metrics, ulp_distance
from difftest.judge.layout import find_transform

DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


def arrays(dtype, shape):
    return hnp.arrays(dtype, shape, elements=None if dtype != np.bool_ else st.booleans())


@st.composite
def pairs(draw, same_dtype=False, same_shape=False):
    dtype_a = draw(DTYPES)
    dtype_b = dtype_a if same_dtype else draw(DTYPES)
    shape_a = draw(SHAPES)
    shape_b = shape_a if same_shape else draw(st.one_of(st.just(shape_a), SHAPES))
    return draw(arrays(dtype_a, shape_a)), draw(arrays(dtype_b, shape_b))


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(pairs())
def test_classify_never_raises_and_labels_are_known(pair):
    a, b = pair
    verdict = classify(a, b)
    assert verdict.label in LABELS and isinstance(verdict.evidence, str) and verdict.evidence


@PROPERTY
@given(pairs())
def test_exact_iff_bit_identical(pair):
    a, b = pair
    identical = a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert (classify(a, b).label == "exact") == identical


@PROPERTY
@given(pairs(same_dtype=True))
def test_shape_and_exact_are_symmetric(pair):
    a, b = pair
    forward, backward = classify(a, b).label, classify(b, a).label
    if "exact" in (forward, backward) or "shape" in (forward, backward):
        assert forward == backward


@PROPERTY
@given(pairs(same_dtype=True, same_shape=True))
def test_error_metrics_are_symmetric_and_finite_counts(pair):
    a, b = pair
    ab, ba = metrics(a, b, 0.0, 0.0), metrics(b, a, 0.0, 0.0)
    assert ab.max_abs == ba.max_abs and ab.nan_mismatch == ba.nan_mismatch
    assert 0 <= ab.mismatched <= a.size + ab.nan_mismatch + ab.inf_mismatch


@PROPERTY
@given(pairs(same_dtype=True, same_shape=True))
def test_ulp_distance_is_symmetric_and_zero_on_self(pair):
    a, b = pair
    d = ulp_distance(a, b)
    if d is not None:
        assert np.array_equal(d, ulp_distance(b, a))
        finite = np.isfinite(a.astype(np.float64)).reshape(-1)
        assert not ulp_distance(a, a)[finite].any()


@PROPERTY
@given(
    hnp.arrays(
        np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), elements=st.floats(-100, 100, width=32)
    )
)
def test_a_found_transform_really_maps_reference_onto_candidate(a):
    rolled = np.roll(a, 1, axis=0)
    description = find_transform(a, rolled, 0.0, 0.0)
    if np.array_equal(a, rolled):
        return
    assert description is not None
