import numpy as np

from difftest.layout import find_transform, same_multiset


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
