"""Faults that used to buy a pass through a benign rule (issue 21, classes 1-9, 11 and 13), each injected into a
real export through ``onnx_transform`` and judged end to end by ``difftest.check``: every one must fail, and the
benign case beside it must still pass. Class 12-16 attacks live beside the code they test."""

from __future__ import annotations

import numpy as np
import torch
from onnx import helper, numpy_helper

import difftest
from difftest.judge.classify import classify
from difftest.suite.graph_edit import nodes_of, rewire_output

FAST = dict(backends=["ort-cpu"], control_budget=0.0)


WRONG = {"mismatch", "layout", "nonfinite", "shape", "frozen_input", "shape_specialized"}


def _labels(result) -> set[str]:
    """The candidates' labels; a harness failure is never what an attack test wants."""
    labels = {o.label for o in result.outcomes}
    assert not labels & {"crash", "export_error", "runtime_error", "timeout"}, result
    return labels


def _caught(result) -> bool:
    """Failed, on the values (not by a stage breaking)."""
    return not result.passed and _labels(result) <= WRONG | {"exact", "numeric"} and bool(_labels(result) & WRONG)


def _insert_before(model, op_type: str, new_op: str, **attrs):
    """Insert ``new_op`` on the data input of every ``op_type`` node."""
    for node in list(nodes_of(model, op_type)):
        source = node.input[0]
        inserted = f"{source}_mutant_{new_op}"
        model.graph.node.insert(
            list(model.graph.node).index(node), helper.make_node(new_op, [source], [inserted], **attrs)
        )
        node.input[0] = inserted
    return model


# -- 1, 2: integers are compared as integers, and a dtype change never wraps values -------------------------------


def test_int64_past_2_53_off_by_one_is_a_mismatch():
    big = np.array([2**53 + 1, 1_700_000_000_123_456_789], dtype=np.int64)
    assert classify(big, big - 1).label == "mismatch"
    assert classify(big, big.copy()).label == "exact"
    assert classify(big.astype(np.uint64), big.astype(np.uint64) + 1).label == "mismatch"


def test_dtype_change_passes_only_when_every_value_round_trips():
    assert classify(np.array([3, -1], np.int8), np.array([259, 255], np.int64)).label == "mismatch"
    assert classify(np.array([True, False]), np.array([7, 0], np.int64)).label == "mismatch"
    assert classify(np.array([3, -1], np.int8), np.array([3, -1], np.int64)).label == "dtype"
    assert classify(np.array([True, False]), np.array([1, 0], np.int64)).label == "dtype"
    assert classify(np.array([3], np.int64), np.array([3.5], np.float32)).label == "mismatch"


class Timestamps(torch.nn.Module):
    def forward(self, t):
        return t + 1


def _int_plus_one(model):
    return rewire_output(
        lambda inner, outer: [
            helper.make_node("Constant", [], ["mutant_one"], value=numpy_helper.from_array(np.array(1, np.int64))),
            helper.make_node("Add", [inner, "mutant_one"], [outer]),
        ]
    )(model)


def test_an_int64_output_off_by_one_past_2_53_fails_end_to_end():
    t = torch.tensor([2**53 + 10, 2**60 + 3], dtype=torch.int64)
    result = difftest.check(Timestamps(), (t,), onnx_transform=_int_plus_one, **FAST)
    assert _caught(result) and _labels(result) == {"mismatch"}


# -- 3, 4, 8, 9: ties come from eager, not from the graph under test ------------------------------------------------


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(6, 5)

    def forward(self, x):
        return self.linear(x).argmax(-1)


def test_ties_created_upstream_of_argmax_by_the_graph_are_not_tie_breaking():
    torch.manual_seed(0)
    model = Classifier().eval()
    x = torch.randn(8, 6)
    # Sigmoid then Floor before the ArgMax: every value the graph's ArgMax sees is 0, so the graph's own values
    # are all tied and its index (the first) differs from eager's.
    mutant = difftest.check(
        model,
        (x,),
        onnx_transform=lambda m: _insert_before(_insert_before(m, "ArgMax", "Floor"), "ArgMax", "Sigmoid"),
        **FAST,
    )
    assert _caught(mutant)
    assert "tie_break" not in _labels(mutant), mutant
    assert difftest.check(model, (x,), **FAST).passed


def _plus_constant(output: int, value: float):
    """A constant added to one graph output."""
    return rewire_output(
        lambda inner, outer: [
            helper.make_node("Constant", [], ["mutant_c"], value=numpy_helper.from_array(np.array(value, np.float32))),
            helper.make_node("Add", [inner, "mutant_c"], [outer]),
        ],
        index=output,
    )


class TopScores(torch.nn.Module):
    def forward(self, scores, boxes):
        top, index = scores.topk(4)
        return top, boxes[index]


def _unsorted_topk(model):
    for node in nodes_of(model, "TopK"):
        for attribute in node.attribute:
            if attribute.name == "sorted":
                attribute.i = 0
        if not any(a.name == "sorted" for a in node.attribute):
            node.attribute.append(helper.make_attribute("sorted", 0))
    return model


def _reverse_topk(model):
    """Every TopK's two results come out in reverse order: the same elements, the order a graph with sorted=0 may
    legally give."""
    for node in list(nodes_of(model, "TopK")):
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        for position, result in enumerate(list(node.output)):
            renamed = f"{result}_unreversed"
            for other in model.graph.node:
                other.input[:] = [f"{result}_reversed" if i == result else i for i in other.input]
            for graph_output in model.graph.output:
                if graph_output.name == result:
                    graph_output.name = f"{result}_reversed"
            node.output[position] = renamed
            names = [f"{renamed}_{k}" for k in ("starts", "ends", "axes", "steps")]
            for name, value in zip(names, ([-1], [-(2**62)], [axis], [-1])):
                model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
            model.graph.node.append(helper.make_node("Slice", [renamed, *names], [f"{result}_reversed"]))
    return model


class TopTen(torch.nn.Module):
    def forward(self, scores):
        return scores.topk(10)


def test_a_graph_that_drops_topk_sorted_cannot_excuse_its_order():
    torch.manual_seed(1)
    scores = torch.rand(1, 50)
    # The graph says sorted=0, and ONNX Runtime then returns the top ten in heap order; eager's call promised
    # sorted=True (the default), so the order is wrong, whatever the graph claims.
    result = difftest.check(TopTen().eval(), (scores,), onnx_transform=_unsorted_topk, **FAST)
    assert _caught(result)


class Unsorted(torch.nn.Module):
    def forward(self, scores):
        return scores.topk(10, sorted=False)


def test_a_model_that_asks_for_unsorted_topk_is_compared_as_sets():
    torch.manual_seed(1)
    scores = torch.rand(1, 50)
    result = difftest.check(Unsorted().eval(), (scores,), onnx_transform=_reverse_topk, **FAST)
    assert result.passed and "tie_break" in _labels(result), result


def test_boxes_of_tied_scores_are_tie_breaking_but_other_rows_are_not():
    scores = torch.tensor([0.9, 0.5, 0.9, 0.3, 0.9, 0.1])
    boxes = torch.arange(24.0).reshape(6, 4)

    assert difftest.check(TopScores().eval(), (scores, boxes), **FAST).passed

    result = difftest.check(TopScores().eval(), (scores, boxes), onnx_transform=_plus_constant(1, 100.0), **FAST)
    assert _caught(result)


class WithConstantSibling(torch.nn.Module):
    def forward(self, x, mask):
        return x * 2, mask * 3


def test_a_constant_sibling_is_not_a_score_output():
    x, mask = torch.randn(4, 3), torch.ones(4, 3)

    # On the base sample (the one every user has) the mask is constant: it must not group anything.
    result = difftest.check(
        WithConstantSibling().eval(), (x, mask), onnx_transform=_plus_constant(0, 100.0), probes=["base"], **FAST
    )
    assert _caught(result)


class CountOfMaxima(torch.nn.Module):
    """An integer output that is not an index: how many values in each row equal the row's maximum."""

    def forward(self, x):
        return (x == x.max(-1, keepdim=True).values).sum(-1)


def _sum_to_max(model):
    """ReduceSum becomes ReduceMax: the count is 1 everywhere, wrong only on rows with tied maxima."""
    for node in nodes_of(model, "ReduceSum"):
        node.op_type = "ReduceMax"
    return model


def test_a_count_wrong_only_on_tied_rows_is_not_tie_breaking():
    torch.manual_seed(2)
    x = torch.randn(6, 8)
    result = difftest.check(CountOfMaxima().eval(), (x,), onnx_transform=_sum_to_max, **FAST)
    verdicts = result.verdicts.to_dicts()
    ties = [v for v in verdicts if v["probe"] == "ties"]
    assert ties and not any(v["label"] == "tie_break" for v in ties), ties
    assert _caught(result)


# -- 5, 6, 13: noise explanations must be of the size they predict -------------------------------------------------


class Long(torch.nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.linear = torch.nn.Linear(n, 8)

    def forward(self, x):
        return self.linear(x)


def _scale_weights(factor: float):
    def mutate(model):
        for initializer in model.graph.initializer:
            array = numpy_helper.to_array(initializer)
            if array.dtype == np.float32 and array.ndim == 2:
                initializer.CopyFrom(numpy_helper.from_array((array * factor).astype(np.float32), initializer.name))
        return model

    return mutate


def test_a_long_linear_with_every_weight_slightly_too_large_is_not_summation_noise():
    torch.manual_seed(3)
    model = Long(3000).eval()
    x = torch.randn(4, 3000)
    result = difftest.check(model, (x,), onnx_transform=_scale_weights(1 + 2e-3), **FAST)
    assert _caught(result), result
    assert difftest.check(model, (x,), **FAST).passed


def test_one_huge_element_does_not_set_the_allowance_for_small_ones():
    rng = np.random.default_rng(4)
    oracle = np.concatenate([[1e6], rng.uniform(0.5e-3, 2e-3, 500), rng.standard_normal(500)])
    reference = oracle.astype(np.float32)
    flipped = reference.copy()
    flipped[1:501] *= -1  # the sign of every small value flipped
    assert classify(reference, flipped, oracle=oracle).label == "mismatch"
    noisy = (oracle * (1 + rng.standard_normal(oracle.size) * 2e-7)).astype(np.float32)
    assert classify(reference, noisy, oracle=oracle).passed


def test_tiny_outputs_are_judged_relative_to_their_magnitude():
    x = np.logspace(-9, -5.2, 64)
    reference = np.log1p(x).astype(np.float32)
    oracle = np.log1p(x)
    wrong = np.log(1 + x.astype(np.float32))  # log(1+x) for log1p: up to 100% off at 1e-9
    verdict = classify(reference, wrong, oracle=oracle)
    assert verdict.label == "mismatch" and "dwarfs" in verdict.evidence
    assert classify(reference, reference * np.float32(1 + 1e-7), oracle=oracle).passed
    # A tolerance the case sets itself is the case's choice.
    assert classify(reference, wrong, atol=1e-5, oracle=oracle).passed


# -- 7, 11: a candidate's own reruns never excuse it; every run is judged -----------------------------------------


def _noise_on_output(model):
    return rewire_output(
        lambda inner, outer: [
            helper.make_node("RandomNormalLike", [inner], [outer + "_noise"], scale=1e-2),
            helper.make_node("Add", [inner, outer + "_noise"], [outer]),
        ]
    )(model)


def test_fresh_noise_on_every_run_is_not_nondeterminism():
    torch.manual_seed(5)
    model = Long(16).eval()
    result = difftest.check(model, (torch.randn(4, 16),), onnx_transform=_noise_on_output, **FAST)
    assert _caught(result)


def test_a_failing_rerun_fails_the_candidate_naming_the_run():
    from difftest.judge.classify import Verdict
    from difftest.judge.verdicts import judge_reruns

    good = np.arange(6, dtype=np.float32)
    first = classify(good, good)
    bad = good + 1
    verdict = judge_reruns(first, good, [bad], [classify(good, bad)])
    assert verdict.label == "mismatch" and "run 2 of 2" in verdict.evidence
    varying = good + np.float32(1e-7)
    verdict = judge_reruns(first, good, [varying], [classify(good, varying)])
    assert verdict.label == "nondeterministic" and "every one passes on its own" in verdict.evidence
    assert isinstance(verdict, Verdict)


def test_benign_argmax_ties_still_pass():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("zoo_pitfalls", Path(__file__).parents[1] / "suites" / "pitfalls.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    ArgMax, _select_last_index = zoo.ArgMax, zoo._select_last_index

    result = difftest.check(
        ArgMax().eval(), (torch.tensor([[1.0, 3.0, 3.0], [5.0, 5.0, 0.0]]),), onnx_transform=_select_last_index, **FAST
    )
    assert result.passed and "tie_break" in _labels(result)


def test_an_error_the_default_tolerance_hides_but_no_rounding_makes_fails():
    """Outputs near 1e-3 where atol 1e-5 allows 1%: a weight fault of 0.5% on them is within the tolerance, yet
    hundreds of times farther from float64 than eager and thousands of epsilons off: a mismatch. A case that
    declares its own tolerance keeps its contract, and ordinary rounding noise stays numeric."""
    rng = np.random.default_rng(6)
    oracle = rng.uniform(0.0005, 0.0018, 4096)
    reference = oracle.astype(np.float32)
    faulty = (oracle * 1.005).astype(np.float32)
    verdict = classify(reference, faulty, oracle=oracle)
    assert verdict.label == "mismatch" and "the tolerance hides an error" in verdict.evidence
    assert classify(reference, faulty, atol=1e-5, oracle=oracle).passed
    noisy = (oracle * (1 + rng.standard_normal(oracle.size) * 3e-7)).astype(np.float32)
    assert classify(reference, noisy, oracle=oracle).passed
