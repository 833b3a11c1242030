"""A tiny suite for end-to-end tests: one case per kind of outcome, all on the fast TorchScript exporter."""

import torch

from difftest import case
from difftest.suite.graph_edit import nodes_of


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


class Affine(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x)


class Unexportable(torch.nn.Module):
    def forward(self, x):
        return torch.special.zeta(x, x)  # no ONNX symbolic in the TorchScript exporter


def _mul_to_add(model):
    for node in nodes_of(model, "Mul"):
        node.op_type = "Add"
    return model


def _break_graph(model):
    for node in nodes_of(model, "Mul"):
        node.op_type = "NoSuchOperator"
    return model


@case(tags=["ok"], exporter="torchscript")
def double():
    """Doubles its input <script>alert('docstring')</script>."""
    return Double().eval(), (torch.arange(6.0).reshape(2, 3),)


@case(tags=["ok"], exporter="torchscript")
def affine():
    """A linear layer: numeric noise at most."""
    torch.manual_seed(0)
    return Affine().eval(), (torch.randn(5, 4),)


@case(tags=["bad"], exporter="torchscript", onnx_transform=_mul_to_add)
def wrong_op():
    """The graph adds where eager multiplies: an unexpected mismatch."""
    return Double().eval(), (torch.arange(6.0).reshape(2, 3),)


@case(tags=["bad"], exporter="torchscript", onnx_transform=_mul_to_add, expect="mismatch")
def wrong_op_expected():
    """The same mismatch, declared: an expected failure."""
    return Double().eval(), (torch.arange(6.0).reshape(2, 3),)


@case(tags=["bad"], exporter="torchscript", expect="export_error")
def unexportable():
    """An operator the TorchScript exporter has no ONNX symbolic for."""
    return Unexportable().eval(), (torch.full((3,), 2.0),)


@case(tags=["bad"], exporter="torchscript", onnx_transform=_break_graph, expect="runtime_error")
def broken_graph():
    """An operator ONNX Runtime does not know: the session cannot be built."""
    return Double().eval(), (torch.ones(3),)


@case(tags=["bad"], expect="export_error")
def factory_raises():
    """The factory itself fails <b>loudly</b>."""
    raise RuntimeError("factory failed <script>alert('message')</script>")


@case(tags=["bad"], exporter="torchscript", expect="runtime_error")
def training_mode_double_input():
    """Left in training mode, and fed float64 to a float32 model: both get a warning."""
    return Affine(), (torch.randn(2, 4, dtype=torch.float64),)
