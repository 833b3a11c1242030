"""The mutation operators of bench/mutants.py, on tiny models, through difftest's whole pipeline (``difftest.check``:
export, probes, reruns, oracle, graph evidence, judge): the unmutated model passes, each mutant changes the graph
and is killed (its ort-cpu outcome fails). See issue 21 and ``make bench-mutants`` for the benchmark itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import difftest

ROOT = Path(__file__).resolve().parent.parent


def _load_mutants():
    name = "difftest_bench_mutants"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "mutants.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


mutants = _load_mutants()


class Mlp(torch.nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(width, 24), torch.nn.Tanh(), torch.nn.Linear(24, 6))

    def forward(self, x):
        return self.net(x)


class LongLinear(torch.nn.Module):
    """One Linear over many terms: where a loose summation bound would excuse a 0.1% weight error."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = torch.nn.Linear(2048, 8)

    def forward(self, x):
        return self.fc(x)


class TopScores(torch.nn.Module):
    def forward(self, x):
        values, index = torch.topk(x, 4, dim=-1, sorted=True)
        return values, index


def _inputs(kind: str):
    torch.manual_seed(2)
    if kind == "long":
        return (torch.randn(3, 2048),)
    if kind == "topk":
        return (torch.randn(3, 10),)
    return (torch.randn(5, 16),)


WRONG_VALUES = {"mismatch", "layout", "shape", "nonfinite", "frozen_input", "shape_specialized"}
MODELS = {"mlp": (Mlp, "mlp"), "long_linear": (LongLinear, "long"), "topk": (TopScores, "topk")}


def _check(model_name: str, tmp_path: Path, operator: str | None):
    factory, kind = MODELS[model_name]
    save = tmp_path / "unmutated.onnx"
    transform = mutants.MutantTransform(None, operator, str(save)) if operator else None
    out = tmp_path / "run"
    result = difftest.check(
        factory().eval(),
        _inputs(kind),
        backends=["ort-cpu"],
        exporter="torchscript",
        onnx_transform=transform,
        out=out,
        control_budget=0.0,
        name=f"{model_name}_{operator}",
    )
    return result, save, out


def _ran_graph(out: Path) -> bytes:
    graphs = sorted((out / "onnx").glob("*.onnx"))
    assert graphs, f"no exported graph under {out / 'onnx'}"
    return graphs[0].read_bytes()


@pytest.mark.parametrize("model_name", ["mlp", "topk"])
def test_unmutated_models_pass(model_name, tmp_path):
    result, _, _ = _check(model_name, tmp_path, None)
    assert result.passed, str(result)


KILLS = [
    ("mlp", "weights_x1.01"),
    ("mlp", "add_constant"),
    ("topk", "integer_plus_one"),
    pytest.param("long_linear", "weights_x1.001"),
    pytest.param("topk", "topk_sorted_flip"),
    pytest.param("mlp", "random_noise"),
]


@pytest.mark.parametrize("model_name,operator", KILLS)
def test_mutant_changes_the_graph_and_is_killed(model_name, operator, tmp_path):
    result, save, out = _check(model_name, tmp_path, operator)
    assert save.exists(), "the mutation transform never ran"
    assert _ran_graph(out) != save.read_bytes(), f"{operator} left the graph unchanged"
    assert not result.passed, f"mutant {operator} of {model_name} survived:\n{result}"
    failed = {o.label for o in result.outcomes if o.status == "fail"}
    assert failed & WRONG_VALUES, f"mutant {operator} failed, but not on its values ({failed}):\n{result}"


def test_operators_return_none_when_nothing_to_mutate():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.BOOL, [2])],
        [helper.make_tensor_value_info("y", TensorProto.BOOL, [2])],
    )
    model = helper.make_model(graph)
    for name in mutants.OPERATORS:
        assert mutants.mutate(model, name) is None, name
    assert len(mutants.OPERATORS) >= 12
