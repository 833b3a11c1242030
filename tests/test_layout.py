import numpy as np

from difftest.judge.layout import find_layout, find_transform, same_multiset


def ref():
    return np.arange(24, dtype=np.float32).reshape(2, 3, 4)


def test_roll_is_named():
    padded = np.zeros((2, 9), np.float32)
    padded[:, 1:6] = np.arange(1, 11).reshape(2, 5)
    shifted = np.roll(padded, 2, axis=1)
    assert find_transform(padded, shifted, 0, 0) == "reference.roll(2, dim=1)"


def test_permutation_flip_and_reshape():
    r = ref()
    assert find_transform(r, r.transpose(0, 2, 1), 0, 0) == "reference.permute(0, 2, 1)"
    assert find_transform(r, np.flip(r, 2).copy(), 0, 0) == "reference.flip(dim=2)"
    assert find_transform(r, r.reshape(6, 4), 0, 0) == "reference.reshape(6, 4)"
    nhwc = r.reshape(1, 2, 3, 4).transpose(0, 2, 3, 1)
    assert find_transform(r.reshape(1, 2, 3, 4), nhwc, 0, 0) == "reference.permute(0, 2, 3, 1)"


def test_other_values_are_not_layout():
    r = ref()
    other = r.copy()
    other[0, 0, 0] = 100
    assert not same_multiset(r, other, 0, 0)
    assert find_transform(r, other, 0, 0) is None


def test_channels_last_memory_flattened_is_named():
    n, c, h, w = 2, 3, 4, 5
    reference = np.random.default_rng(0).standard_normal((n, c * h * w)).astype(np.float32)
    candidate = reference.reshape(n, c, h * w).transpose(0, 2, 1).reshape(n, -1).copy()
    found = find_layout(reference, candidate, 0, 0)
    assert found is not None and found.named
    assert "permute(0, 2, 1)" in found.evidence and "reshape" in found.evidence


def test_rows_in_another_order_are_layout_with_the_order():
    reference = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    candidate = reference[[2, 0, 4, 1, 3]]
    found = find_layout(reference, candidate, 0, 0)
    assert found is not None
    assert "another order" in found.evidence and "[2, 0, 4, 1, 3]" in found.evidence


def test_complex_returned_as_real_pairs():
    rng = np.random.default_rng(2)
    reference = (rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))).astype(np.complex64)
    candidate = np.stack([reference.real, reference.imag], -1).astype(np.float32)
    found = find_layout(reference, candidate, 1.3e-6, 1e-5)
    assert found is not None and "view_as_real" in found.evidence


def test_permutation_without_a_transform_says_so():
    reference = np.arange(24, dtype=np.int64).reshape(4, 6)
    candidate = np.random.default_rng(3).permutation(reference.reshape(-1)).reshape(4, 6)
    found = find_layout(reference, candidate, 0, 0)
    assert found is not None and not found.named and "transform not identified" in found.evidence


def test_coincidences_are_not_layout():
    few = np.array([[0, 1, 0, 1], [1, 0, 1, 0]], dtype=np.int64)  # two distinct values: any shuffle matches
    assert find_layout(few, few[:, ::-1].copy(), 0, 0) is None
    argsort = np.stack([np.random.default_rng(i).permutation(8) for i in range(4)])  # rows permute 0..7
    other = np.stack([np.random.default_rng(10 + i).permutation(8) for i in range(4)])
    assert find_layout(argsort, other, 0, 0) is None
    floats = np.random.default_rng(4).standard_normal(16).astype(np.float32)
    noisy = floats[::-1] * np.float32(1 + 1e-7)  # equal only within tolerance, reversed: named, or nothing
    found = find_layout(floats, noisy, 1.3e-6, 1e-5)
    assert found is None or found.named


def test_float_multiset_is_bit_exact():
    reference = np.array([0.0, 1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    candidate = np.array([-0.0, 4.0, 3.0, 2.0, 1.0], dtype=np.float32)  # -0.0 is not 0.0 bit for bit
    found = find_layout(reference, candidate, 0, 0)
    assert found is None or found.named  # not an exact permutation; only a named transform within tolerance
