"""Models as people write them: caches in and out, containers of tensors, masks, optional dependencies."""

import torch
from onnx import TensorProto, helper

from difftest import Case, case, importorskip
from difftest.suite.graph_edit import rewire_output


class Layer:
    def __init__(self, keys, values):
        self.keys, self.values = keys, values


class KVCache:
    """A hand-made stand-in for transformers' DynamicCache: layers of keys and values, appended to in place."""

    def __init__(self, layers):
        self.layers = layers
        self.note = "a cache"

    def update(self, keys, values, layer):
        self.layers[layer].keys = torch.cat([self.layers[layer].keys, keys], dim=1)
        self.layers[layer].values = torch.cat([self.layers[layer].values, values], dim=1)
        return self.layers[layer].keys, self.layers[layer].values


class Decoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.k = torch.nn.Linear(8, 8)
        self.v = torch.nn.Linear(8, 8)

    def forward(self, x, cache):
        keys, values = cache.update(self.k(x), self.v(x), 0)
        scores = (x @ keys.transpose(1, 2)).softmax(-1)
        return {"out": scores @ values, "cache": cache}


def _cache():
    g = torch.Generator().manual_seed(1)
    return KVCache([Layer(torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g))])


@case(exporter="torchscript")
def cache_in_and_out():
    """A cache passed in, appended to by the forward, and returned: every stage gets its own copy."""
    return Decoder().eval(), (torch.randn(2, 1, 8, generator=torch.Generator().manual_seed(2)), _cache())


@case()
def cache_in_and_out_dynamo():
    """The same through the dynamo exporter."""
    return Decoder().eval(), (torch.randn(2, 1, 8, generator=torch.Generator().manual_seed(2)), _cache())


class Pairs(torch.nn.Module):
    def forward(self, pair, *, extra):
        return pair[0] * pair[1] + extra["bias"]


@case(exporter="torchscript")
def tuple_and_dict_inputs():
    """Tensors inside a tuple argument and a dict keyword argument are inputs, named after their path."""
    return Pairs().eval(), ((torch.ones(2, 2), torch.full((2, 2), 3.0)),), {"extra": {"bias": torch.ones(2)}}


class Labelled(torch.nn.Module):
    def forward(self, x):
        return {"value": x * 2, "label": "text"}


@case(exporter="torchscript", expect="export_error")
def output_without_tensors():
    """An output that holds no tensor cannot be compared: a case-definition error, not a verdict on a runtime."""
    return Labelled().eval(), (torch.ones(2),)


def _zero_where_masked(model):
    """A rewrite that zeroes the output where the mask is 0: a difference confined to padding."""
    def make(inner, outer):
        return [helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
                helper.make_node("Unsqueeze", ["mask_f", "axes"], ["mask_3d"]),
                helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [2])),
                helper.make_node("Mul", [inner, "mask_3d"], [outer])]
    return rewire_output(make)(model)


class Scores(torch.nn.Module):
    def forward(self, x, mask):
        return x * 2 + mask.sum()


def _left_padded():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    return torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(3)) + 1, mask


@case(exporter="torchscript", onnx_transform=_zero_where_masked, probes=["base"], expect="mismatch")
def padding_only_difference():
    """Differs only where the mask is 0: the evidence says where."""
    return Scores().eval(), _left_padded()


@case(exporter="torchscript", onnx_transform=_zero_where_masked, probes=["base"])
def padding_declared_ignorable():
    """The same, with the padding declared ignorable: judged on the real tokens, the rest reported."""
    return Case(Scores().eval(), _left_padded(), output_masks={"output": "mask"})


@case(exporter="torchscript", probes=["base"], expect="export_error")
def mask_names_no_output():
    """An output mask under the name the model's docs use, not the flattened one: a definition error, not a pass
    that silently judged the padding."""
    return Case(Scores().eval(), _left_padded(), output_masks={"logits": "mask"})


@case(exporter="torchscript", probes=["base"], expect="export_error")
def mask_does_not_line_up():
    """A mask whose shape is not the output's leading dimensions."""
    x, mask = _left_padded()
    return Case(Scores().eval(), (x.transpose(0, 1).contiguous(), mask), output_masks={"output": "mask"})


@case()
def needs_an_optional_package():
    """Skipped, with the reason, where the package is missing."""
    importorskip("no_such_package_for_difftest")
    return torch.nn.Identity(), (torch.ones(2),)
