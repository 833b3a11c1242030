"""The export wrapper: both exporters, input names, and the shared torchlib registry changing nothing."""

import subprocess
import sys

import torch

from difftest.export.exporter import export, reuse_torchlib_registry
from difftest.suite.model_io import FlatModule, signature_of

SCRIPT = """
import sys, torch
from difftest.export.exporter import export
from difftest.suite.model_io import FlatModule, signature_of
sys.path.insert(0, {tests!r})
from test_export import Model
torch.manual_seed(0)
module = Model().eval()
signature, example = signature_of(module, (torch.randn(2, 8),), None)
result = export(FlatModule(module, signature), tuple(example), ["output"], exporter="dynamo")
sys.stdout.buffer.write(result.onnx_bytes)
"""


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, x):
        return torch.nn.functional.gelu(self.lin(x)).softmax(-1)


def _exported() -> bytes:
    torch.manual_seed(0)
    module = Model().eval()
    signature, example = signature_of(module, (torch.randn(2, 8),), None)
    result = export(FlatModule(module, signature), tuple(example), ["output"], exporter="dynamo")
    assert result.ok, result.error
    return result.onnx_bytes


def test_shared_registry_gives_the_same_model_as_a_fresh_exporter(monkeypatch):
    from pathlib import Path

    import difftest.export.exporter as export_module

    monkeypatch.setattr(export_module, "reuse_torchlib_registry", lambda: False)  # the child exports the stock way
    stock = subprocess.run(
        [
            sys.executable,
            "-c",
            "import difftest.export.exporter as e; e.reuse_torchlib_registry = lambda: False\n"
            + SCRIPT.format(tests=str(Path(__file__).parent)),
        ],
        capture_output=True,
        check=True,
    ).stdout
    monkeypatch.undo()
    assert reuse_torchlib_registry()
    assert _exported() == stock
    assert _exported() == stock  # the second export reuses the registry


def test_graph_inputs_are_named_after_the_signature():
    module = Model().eval()
    signature, example = signature_of(module, (torch.randn(2, 8),), None)
    for exporter in ("dynamo", "torchscript"):
        result = export(FlatModule(module, signature), tuple(example), ["output"], exporter=exporter)
        assert result.graph_inputs == ["x"] and result.graph_outputs == ["output"]
