"""Cases whose blame is known: who produced the graph, and what the controls (onnx-ref, opt=disable) show."""

import torch
from onnx import TensorProto, helper

from difftest import case
from difftest.suite.graph_edit import nodes_of, rewire_output


class Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.eval()

    def forward(self, *args):
        return self.fn(*args)



def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _add_to_sub(model):
    for node in nodes_of(model, "Add"):
        node.op_type = "Sub"
    return model


@case(exporter="torchscript", onnx_transform=_add_to_sub, expect="mismatch")
def rewritten_by_the_case():
    """The case's own rewrite turns Add into Sub: the graph is wrong, and the case made it so."""
    return Fn(lambda x: x + 1.5), (randn(3, 4),)


@case(exporter="torchscript", expect="mismatch")
def exporter_truncates_division():
    """The TorchScript exporter truncates `//` on negative integers toward zero; eager floors."""
    return Fn(lambda a: (a * 7) // 3), (torch.arange(-12, 12).reshape(4, 6),)


@case(expect="nonfinite")
def runtime_drops_nan():
    """ORT's ReduceMax skips NaN (microsoft/onnxruntime#10514); eager and the ONNX specification propagate it."""
    x = randn(3, 5)
    x[1, 2] = float("nan")
    return Fn(lambda t: t.amax(-1)), (x,)


def _to_int64(model):
    return rewire_output(lambda inner, outer: [helper.make_node("Cast", [inner], [outer], to=TensorProto.INT64)],
                         elem_type=TensorProto.INT64)(model)


@case(exporter="torchscript", expect=["exact", "mismatch"])
def float_to_int_out_of_range():
    """Casting floats far beyond int32 to int32: undefined in the ONNX specification and in C++."""
    return Fn(lambda x: x.to(torch.int32)), (torch.tensor([1.5, -2.5, 3e10, -3e10, float("nan")]),)
