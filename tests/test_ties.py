import numpy as np

from difftest.judge.ties import RankedValues, gathered_ties, index_ties

VALUES = np.array([[1.0, 3.0, 3.0], [5.0, 4.0, 0.0]], dtype=np.float32)


def test_differing_indices_on_tied_values_are_ties():
    finding = index_ties(np.array([1, 0]), np.array([2, 0]), RankedValues(VALUES, "ArgMax", 1, False), 1e-6, 1e-6)
    assert finding.ties_explain and "both values 3" in finding.evidence


def test_differing_indices_on_different_values_are_not():
    finding = index_ties(np.array([1, 0]), np.array([1, 1]), RankedValues(VALUES, "ArgMax", 1, False), 1e-6, 1e-6)
    assert not finding.ties_explain and "value 5" in finding.evidence and "value 4" in finding.evidence


def test_keepdims_and_out_of_range():
    ranked = RankedValues(VALUES, "ArgMax", 1, True)
    assert index_ties(np.array([[1], [0]]), np.array([[2], [0]]), ranked, 0, 0).ties_explain
    assert not index_ties(np.array([[1], [0]]), np.array([[9], [0]]), ranked, 0, 0).ties_explain


def test_gathered_rows_compared_as_sets_within_tied_scores():
    scores = np.array([0.9, 0.9, 0.9, 0.5], dtype=np.float32)
    boxes = np.arange(16, dtype=np.float32).reshape(4, 4)
    reordered = boxes[[2, 0, 1, 3]]
    assert gathered_ties(boxes, reordered, scores, scores, "scores", 0, 0).ties_explain
    wrong = boxes.copy()
    wrong[0] = 99
    finding = gathered_ties(boxes, wrong, scores, scores, "scores", 0, 0)
    assert finding is not None and not finding.ties_explain


def test_rows_of_distinct_scores_must_match():
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    boxes = np.arange(16, dtype=np.float32).reshape(4, 4)
    finding = gathered_ties(boxes, boxes[[1, 0, 2, 3]], scores, scores, "scores", 0, 0)
    assert not finding.ties_explain
