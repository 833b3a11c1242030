"""A labelled corpus for the classifier: each case's ``expect`` is its true label.

Benign cases (deep conv stacks, long reductions, ties from ReLU zeros, argmax over equal logits) must not
raise a false alarm; real faults are injected into the exported graph with ``onnx_transform`` so the truth
is known. `make bench-classify` runs it and prints the confusion matrix.
Cases use the fast TorchScript exporter unless the case is about the exporter.
"""

import numpy as np
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from difftest import Case, case
from difftest.suite.graph_edit import (
    edit_constant_input,
    nodes_of,
    replace_op,
    rewire_output,
    scale_constant_input,
    set_attribute,
    swap_pad_begin_end,
)

AGREE = ["exact", "numeric"]
TS = "torchscript"


def seeded(module):
    torch.manual_seed(0)
    return module.eval()


class Fn(torch.nn.Module):
    """A module around a function, so the corpus stays compact."""

    def __init__(self, fn, *modules):
        super().__init__()
        self.fn = fn
        self.parts = torch.nn.ModuleList(modules)

    def forward(self, *args):
        return self.fn(self.parts, *args)


def conv_stack(depth, channels=8):
    layers = [torch.nn.Conv2d(3, channels, 3, padding=1)]
    for _ in range(depth - 1):
        layers += [torch.nn.ReLU(), torch.nn.Conv2d(channels, channels, 3, padding=1)]
    return torch.nn.Sequential(*layers)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _select_last(model):
    for node in nodes_of(model, "ArgMax"):
        set_attribute(node, "select_last_index", 1)
    return model


def _noise(scale):
    """Add fresh random noise on every run: a nondeterministic kernel."""
    return rewire_output(
        lambda inner, outer: [
            helper.make_node("RandomNormalLike", [inner], ["noise"], scale=scale),
            helper.make_node("Add", [inner, "noise"], [outer]),
        ]
    )


def _cast(to):
    return rewire_output(lambda inner, outer: [helper.make_node("Cast", [inner], [outer], to=to)], elem_type=to)


def _transpose(perm):
    return rewire_output(lambda inner, outer: [helper.make_node("Transpose", [inner], [outer], perm=perm)])


def _flip_rows(n):
    def make(inner, outer):
        index = helper.make_tensor("flip_index", TensorProto.INT64, [n], list(range(n - 1, -1, -1)))
        return [
            helper.make_node("Constant", [], ["flip_idx"], value=index),
            helper.make_node("Gather", [inner, "flip_idx"], [outer], axis=0),
        ]

    return rewire_output(make)


def _concat_self(axis):
    return rewire_output(lambda inner, outer: [helper.make_node("Concat", [inner, inner], [outer], axis=axis)])


def _scale_output(factor):
    def make(inner, outer):
        value = helper.make_tensor("factor_value", TensorProto.FLOAT, [], [factor])
        return [
            helper.make_node("Constant", [], ["factor"], value=value),
            helper.make_node("Mul", [inner, "factor"], [outer]),
        ]

    return rewire_output(make)


def _ln_epsilon(model):
    for node in nodes_of(model, "LayerNormalization"):
        set_attribute(node, "epsilon", 0.5)
    return model


# --- benign: must pass -------------------------------------------------------------------------------


@case(exporter=TS, expect=AGREE, tags=["benign"])
def deep_conv_stack():
    """Twelve conv layers: float differences accumulate but stay noise."""
    return seeded(conv_stack(12)), (randn(1, 3, 24, 24),)


@case(exporter=TS, expect=AGREE, tags=["benign"])
def deep_conv_stack_wide():
    """Six wider conv layers with ReLU."""
    return seeded(conv_stack(6, 32)), (randn(2, 3, 16, 16),)


@case(exporter=TS, expect=AGREE, tags=["benign"])
def long_matmul():
    """A 4096-long dot product: accumulation order differs, error grows with K."""
    return Fn(lambda p, a, b: a @ b), (randn(8, 4096), randn(4096, 8, seed=1))


@case(exporter=TS, expect=AGREE, tags=["benign"])
def cumsum_long():
    """A cumulative sum over 8192 elements."""
    return Fn(lambda p, x: x.cumsum(-1)), (randn(2, 8192),)


@case(exporter=TS, expect=AGREE, tags=["benign"])
def softmax_layernorm_gelu():
    """Softmax, LayerNorm and GELU (tanh approximation): transcendental noise."""
    return seeded(Fn(lambda p, x: F.gelu(p[0](x.softmax(-1) * 10), approximate="tanh"), torch.nn.LayerNorm(64))), (
        randn(4, 64),
    )


@case(exporter=TS, expect=AGREE, tags=["benign"])
def attention():
    """Multi-head self-attention."""
    return seeded(
        Fn(lambda p, x: p[0](x, x, x, need_weights=False)[0], torch.nn.MultiheadAttention(32, 4, batch_first=True))
    ), (randn(2, 12, 32),)


@case(exporter=TS, expect=AGREE, tags=["benign"])
def mlp_large_values():
    """Large activations: absolute errors exceed atol while relative errors are tiny."""
    return seeded(torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 16))), (
        randn(8, 64) * 1000,
    )


@case(exporter=TS, expect=AGREE, tags=["benign"])
def lstm():
    """A two-layer LSTM over 20 steps."""
    return seeded(Fn(lambda p, x: p[0](x)[0], torch.nn.LSTM(16, 32, num_layers=2, batch_first=True))), (
        randn(2, 20, 16),
    )


@case(exporter=TS, expect=["exact", "numeric", "tie_break"], tags=["benign", "ties"])
def argmax_after_relu():
    """Argmax over ReLU outputs where whole rows are zero: ties from ReLU zeros."""
    return Fn(lambda p, x: torch.relu(x).argmax(-1)), (torch.cat([-torch.ones(4, 8), randn(4, 8)]),)


@case(exporter=TS, expect="tie_break", tags=["benign", "ties"], onnx_transform=_select_last)
def argmax_equal_logits():
    """Every logit equal: eager picks the first, this graph the last. All tied, so benign."""
    return Fn(lambda p, x: x.argmax(-1)), (torch.zeros(3, 10),)


@case(exporter=TS, expect="tie_break", tags=["benign", "ties"], onnx_transform=_select_last)
def argmax_some_ties():
    """Some rows tied at the maximum, some not."""
    return Fn(lambda p, x: x.argmax(1)), (
        torch.tensor([[1.0, 5.0, 5.0, 0.0], [3.0, 1.0, 2.0, 0.0], [2.0, 2.0, 2.0, 2.0]]),
    )


@case(exporter=TS, expect=["exact", "tie_break"], tags=["benign", "ties"])
def topk_ties():
    """Top-k over scores with equal values: the indices' order among ties is unspecified."""
    return Fn(lambda p, x: x.topk(5)), (torch.tensor([[0.5, 0.9, 0.9, 0.1, 0.9, 0.5, 0.9, 0.2]]),)


@case(exporter=TS, expect=["exact", "tie_break"], tags=["benign", "ties"])
def boxes_by_equal_scores():
    """Boxes gathered by top-k over equal scores: compared as sets within tied groups."""
    scores = torch.tensor([0.7, 0.7, 0.2, 0.7, 0.9, 0.9])
    return Fn(lambda p, s, b: (s.topk(4)[0], b[s.topk(4)[1]])), (scores, torch.arange(24.0).reshape(6, 4))


@case(exporter=TS, expect="exact", tags=["benign"])
def integer_ops():
    """Integer arithmetic without division: must be bit-identical."""
    return Fn(lambda p, a: a * 7 - a % 5 + (a > 3).long()), (torch.arange(-20, 20).reshape(4, 10),)


@case(exporter=TS, expect="mismatch", tags=["fault", "found"])
def floor_divide_negative():
    """`//` on negative integers: a real discrepancy found by this corpus (see the evidence: eager floors,
    the exported graph truncates toward zero)."""
    return Fn(lambda p, a: (a * 7) // 3), (torch.arange(-20, 20).reshape(4, 10),)


@case(exporter=TS, expect="dtype", tags=["benign"], onnx_transform=_cast(TensorProto.INT32))
def int64_output_as_int32():
    """The graph returns int32 where eager returns int64: same values."""
    return Fn(lambda p, a: a * 2), (torch.arange(12).reshape(3, 4),)


@case(exporter=TS, expect="dtype", tags=["benign"], onnx_transform=_cast(TensorProto.DOUBLE))
def float_output_as_double():
    """The graph returns float64 where eager returns float32: same values."""
    return Fn(lambda p, x: x * 0.5), (randn(3, 4),)


@case(exporter=TS, expect="mismatch", tags=["fault"], onnx_transform=_noise(1e-3), probes=["base"])
def noisy_kernel():
    """A kernel whose output varies run to run by about 1e-3 and is that far from float64 on every run: the
    candidate's own spread excuses nothing (uninitialised memory, a race); each run is judged on its own."""
    return Fn(lambda p, x: x * 1.0), (randn(64, 64),)


# --- real faults: must be caught, with the right label ------------------------------------------------


@case(exporter=TS, expect="mismatch", tags=["fault"], onnx_transform=replace_op("Mul", "Add"))
def wrong_operator():
    """Mul rewritten as Add."""
    return Fn(lambda p, x: x * 3.0), (randn(4, 4),)


@case(exporter=TS, expect="mismatch", tags=["fault"], onnx_transform=_ln_epsilon)
def layernorm_epsilon():
    """LayerNorm epsilon changed from 1e-5 to 0.5."""
    return seeded(torch.nn.LayerNorm(16)), (randn(4, 16) * 0.3,)


@case(exporter=TS, expect="mismatch", tags=["fault"], onnx_transform=scale_constant_input("Conv", 1, 1.001))
def conv_weights_off_by_1e3():
    """Conv weights scaled by 1.001: small, but far beyond float noise per the oracle."""
    return seeded(conv_stack(3)), (randn(1, 3, 16, 16),)


@case(exporter=TS, expect="mismatch", tags=["fault"], onnx_transform=_scale_output(1.0001))
def output_scaled_1e4():
    """Output scaled by 1.0001 after a long matmul: the kind of drift tolerance alone cannot judge."""
    return Fn(lambda p, a, b: a @ b), (randn(8, 512), randn(512, 8, seed=1))


@case(exporter=TS, expect="mismatch", tags=["fault"], onnx_transform=replace_op("Relu", "LeakyRelu", alpha=0.1))
def relu_became_leaky():
    """ReLU rewritten as LeakyReLU(0.1)."""
    return seeded(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())), (randn(4, 8),)


@case(exporter=TS, expect="mismatch", tags=["fault"], onnx_transform=replace_op("Sigmoid", "HardSigmoid"))
def sigmoid_became_hard():
    """Sigmoid rewritten as HardSigmoid."""
    return Fn(lambda p, x: torch.sigmoid(x)), (randn(4, 8),)


@case(
    exporter=TS,
    expect="mismatch",
    tags=["fault", "ties"],
    onnx_transform=replace_op("ArgMax", "ArgMin", axis=-1, keepdims=0),
)
def argmax_became_argmin():
    """A real index error: ArgMin where eager takes ArgMax; the values are not tied."""
    return Fn(lambda p, x: x.argmax(-1)), (randn(5, 7),)


@case(exporter=TS, expect="mismatch", tags=["fault"], onnx_transform=edit_constant_input("Resize", 2, lambda s: s))
def resize_mode_changed():
    """Resize: nearest in eager, linear in the graph."""

    def make(model):
        for node in nodes_of(model, "Resize"):
            set_attribute(node, "mode", "linear")
        return model

    return Case(
        Fn(lambda p, x: F.interpolate(x, scale_factor=2.0, mode="nearest")), (randn(1, 2, 4, 4),), onnx_transform=make
    )


@case(exporter=TS, expect="mismatch", tags=["fault"], onnx_transform=replace_op("Add", "Sub"))
def bias_sign_flipped():
    """The bias is subtracted instead of added."""
    return Fn(lambda p, x: x + 0.25), (randn(6, 6),)


@case(expect="layout", tags=["fault"], onnx_transform=edit_constant_input("Pad", 1, swap_pad_begin_end))
def pad_begin_end_swapped():
    """Pads written begin/end the wrong way round: values shifted along the padded axis."""
    return Fn(lambda p, x: F.pad(x, (0, 3))), (randn(2, 5),)


@case(expect="layout", tags=["fault"], onnx_transform=edit_constant_input("Pad", 1, swap_pad_begin_end))
def pad_4d_swapped():
    """A 4-D tensor padded (1, 2) on its last axis, begin and end swapped by a rewrite: shifted by one."""
    return Fn(lambda p, x: F.pad(x, (1, 2))), (randn(1, 2, 3, 4),)


@case(exporter=TS, expect="layout", tags=["fault"], onnx_transform=_transpose([1, 0]))
def square_output_transposed():
    """A square output transposed by a rewrite."""
    return Fn(lambda p, x: x * 2.0), (randn(5, 5),)


@case(exporter=TS, expect="layout", tags=["fault"], onnx_transform=_transpose([0, 2, 3, 1]))
def nchw_as_nhwc():
    """NCHW returned as NHWC: same values, permuted axes."""
    return Fn(lambda p, x: x + 1.0), (randn(1, 3, 4, 5),)


@case(exporter=TS, expect="layout", tags=["fault"], onnx_transform=_flip_rows(6))
def rows_reversed():
    """Rows returned in reverse order."""
    return Fn(lambda p, x: x * 1.5), (randn(6, 3),)


@case(exporter=TS, expect="shape", tags=["fault"], onnx_transform=_concat_self(0))
def output_duplicated():
    """The output concatenated with itself: twice the rows."""
    return Fn(lambda p, x: x - 1.0), (randn(3, 4),)


@case(exporter=TS, expect="shape", tags=["fault"])
def slice_end_off_by_one():
    """A slice's end moved by one: one row short."""

    def make(model):
        node = nodes_of(model, "Slice")[0]
        from difftest.suite.graph_edit import constant, set_constant

        ends = constant(model, node.input[2])
        set_constant(model, node.input[2], (ends - 1).astype(ends.dtype))
        return model

    return Case(Fn(lambda p, x: x[1:5] * 2), (randn(6, 3),), onnx_transform=make)


@case(exporter=TS, expect="nonfinite", tags=["fault"], onnx_transform=replace_op("Relu", "Identity"))
def sqrt_of_negative():
    """sqrt(relu(x)) with the ReLU dropped: NaN where x < 0, finite in eager and the oracle."""
    return Fn(lambda p, x: torch.sqrt(torch.relu(x))), (randn(4, 6),)


@case(exporter=TS, expect="nonfinite", tags=["fault"], onnx_transform=replace_op("Add", "Mul"))
def division_by_zero():
    """x / (relu(y) + 1) rewritten as x / (relu(y) * 1): Inf where relu(y) is 0."""
    return Fn(lambda p, x, y: x / (torch.relu(y) + 1)), (randn(4, 6), randn(4, 6, seed=3))


class Masked(torch.nn.Module):
    def forward(self, x, *, mask):
        return (x * mask).sum(-1)


class Scaled(torch.nn.Module):
    def forward(self, x, *, scale):
        return torch.tanh(x) * scale


@case(exporter=TS, expect="frozen_input", tags=["fault"], bake_kwargs=True)
def mask_baked_in():
    """An attention-style mask passed as a kwarg and baked into the graph."""
    return Masked().eval(), (randn(3, 8),), {"mask": (randn(3, 8, seed=2) > 0).float()}


@case(expect="frozen_input", tags=["fault"], bake_kwargs=True)
def scale_baked_in_dynamo():
    """A per-channel scale passed as a kwarg and baked in, through the dynamo exporter."""
    return Scaled().eval(), (randn(2, 5),), {"scale": randn(5, seed=4)}


@case(exporter=TS, expect="shape_specialized", tags=["fault"])
def reshape_with_int_batch():
    """x.view(int(x.shape[0]), -1): the batch size is frozen into the traced graph."""
    return Case(
        Fn(lambda p, x: x.view(int(x.shape[0]), -1) * 2), (randn(2, 3, 4),), dynamic_axes={"arg0": {0: "batch"}}
    )


@case(exporter=TS, expect="shape_specialized", tags=["fault"])
def interpolate_to_frozen_size():
    """Interpolate to a size built with int() from the input's shape times two."""

    def fn(p, x):
        return F.interpolate(x, size=(int(x.shape[2]) * 2, int(x.shape[3]) * 2), mode="nearest")

    return Case(Fn(fn), (randn(1, 1, 3, 3),), dynamic_axes={"arg0": {2: "h", 3: "w"}})


@case(exporter=TS, expect="export_error", tags=["fault"])
def unsupported_operator():
    """An operator without an ONNX symbolic."""
    return Fn(lambda p, x: torch.special.zeta(x, x)), (torch.full((3,), 2.0),)


@case(exporter=TS, expect="runtime_error", tags=["fault"], onnx_transform=replace_op("Mul", "NotAnOperator"))
def unknown_operator_in_graph():
    """A rewrite left an operator ONNX Runtime does not know."""
    return Fn(lambda p, x: x * 2.0), (randn(3),)


@case(
    exporter=TS,
    expect="runtime_error",
    tags=["fault"],
    onnx_transform=edit_constant_input("Reshape", 1, lambda s: np.array([7, -1], dtype=s.dtype)),
)
def impossible_reshape():
    """A Reshape target that cannot hold the data: ONNX Runtime refuses at run time."""
    return Fn(lambda p, x: x.reshape(4, 6)), (randn(2, 12),)


# --- the harness keeps the model as the factory made it ---------------------------------------------


class DropoutHead(torch.nn.Module):
    """A head with dropout, built and put in eval mode by the factory."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(torch.relu(self.lin(x)))


@case(exporter=TS, expect=AGREE, tags=["benign", "state"])
def dropout_head_stays_in_eval():
    """The TorchScript exporter restores the training mode of the module it is handed (difftest's adapter):
    without a guard, the eval-mode dropout comes back active and eager turns random."""
    return seeded(DropoutHead()), (randn(8, 16),)


class CallCounter(torch.nn.Module):
    """A forward that writes into its own buffer (a call counter), as caching layers and running statistics do."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return x * self.calls


@case(exporter=TS, expect="mismatch", tags=["fault", "state"])
def forward_writes_its_buffer():
    """A stateful layer does not survive a trace: the TorchScript export bakes the buffer as its own traced
    forward left it (x * 2 for ever), while eager from the factory's state computes x * 1. Every stage starts
    from the factory's state (the guard restores the buffer after each forward), so the finding is stable."""
    return CallCounter().eval(), (randn(3, 4),)


# --- generated probes keep the model's contract ---------------------------------------------------------


class ScatterIntoMask(torch.nn.Module):
    def forward(self, x, mask, source):
        return x.masked_scatter(mask, source)


@case(expect=AGREE, tags=["benign", "probes"])
def masked_scatter_exact_source():
    """The source holds exactly as many values as the mask has True entries: a probe with more Trues makes
    eager itself raise, which is no finding about the candidate."""
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, 1] = mask[1, 3] = mask[2, 0] = mask[3, 5] = True
    return ScatterIntoMask().eval(), (randn(4, 6), mask, randn(4, seed=5))


class FixedLength(torch.nn.Module):
    def forward(self, frames):
        if frames.shape[-1] != 12:
            raise ValueError(f"expects 12 frames, got {frames.shape[-1]}")
        return frames.mean(-1)


@case(exporter=TS, expect=AGREE, tags=["benign", "probes"], dynamic_axes={"frames": {2: "time"}})
def declared_dynamic_but_fixed():
    """The case declares the time axis dynamic, but the model itself only takes 12 frames: eager rejects the
    shape probe, so nothing was frozen by the export (the probe is invalid, not the graph)."""
    return FixedLength().eval(), (randn(2, 3, 12),)


# --- the same values in another arrangement -----------------------------------------------------------


def _flatten_channels_last(channels):
    def make(inner, outer):
        shape = helper.make_tensor("cl_shape", TensorProto.INT64, [3], [0, channels, -1])
        flat = helper.make_tensor("cl_flat", TensorProto.INT64, [2], [0, -1])
        return [
            helper.make_node("Constant", [], ["cl_s"], value=shape),
            helper.make_node("Constant", [], ["cl_f"], value=flat),
            helper.make_node("Reshape", [inner, "cl_s"], ["cl_split"]),
            helper.make_node("Transpose", ["cl_split"], ["cl_t"], perm=[0, 2, 1]),
            helper.make_node("Reshape", ["cl_t", "cl_f"], [outer]),
        ]

    return rewire_output(make)


@case(exporter=TS, expect="layout", tags=["fault", "layout"], onnx_transform=_flatten_channels_last(4))
def features_flattened_channels_last():
    """A conv's features flattened in channels-last order by a rewrite: the candidate is
    reference.reshape(n, c, h*w).permute(0, 2, 1).reshape(n, -1)."""
    return seeded(Fn(lambda p, x: p[0](x).flatten(1), torch.nn.Conv2d(3, 4, 3, padding=1))), (randn(2, 3, 5, 5),)


def _gather_rows(order):
    def make(inner, outer):
        index = helper.make_tensor("row_order", TensorProto.INT64, [len(order)], order)
        return [
            helper.make_node("Constant", [], ["row_idx"], value=index),
            helper.make_node("Gather", [inner, "row_idx"], [outer], axis=0),
        ]

    return rewire_output(make)


@case(exporter=TS, expect="layout", tags=["fault", "layout"], onnx_transform=_gather_rows([2, 0, 4, 1, 3]))
def detections_in_another_order():
    """Rows (detections) returned in another order that no flip or roll describes: the rows' multiset is the
    same, the order is not."""
    return Fn(lambda p, x: x * 2.0), (randn(5, 4),)


class ComplexProduct(torch.nn.Module):
    def forward(self, a, b):
        return torch.view_as_complex(a) * torch.view_as_complex(b)


@case(expect="layout", tags=["fault", "layout", "complex"])
def complex_product_as_pairs():
    """A complex result: ONNX has no complex outputs, so the graph returns (real, imaginary) pairs."""
    return ComplexProduct().eval(), (randn(3, 4, 2), randn(3, 4, 2, seed=1))


@case(exporter=TS, expect="mismatch", tags=["fault", "layout"], onnx_transform=_gather_rows([1, 0, 2, 3, 4, 5]))
def class_map_with_swapped_rows():
    """Integer class indices with few distinct values, two rows swapped by a rewrite and one changed: the
    multiset differs, so this is a plain mismatch, not a coincidental 'layout'."""
    return Fn(lambda p, x: (x > 0).long() + (x > 1).long()), (randn(6, 5),)


# --- a decision the trace froze -------------------------------------------------------------------------


class NormalizeIfLarge(torch.nn.Module):
    def forward(self, x):
        peak = x.abs().max()
        if peak > 2:
            return x / peak
        return x


@case(exporter=TS, expect="frozen_input", tags=["fault", "tracer"])
def normalize_branch_frozen():
    """A data-dependent branch: the trace took the 'normalize' branch; inputs whose peak is small must not be
    divided, but the graph still divides (the TorchScript tracer warned about it)."""
    return NormalizeIfLarge().eval(), (randn(4, 8) * 2,)


# --- long accumulations: float32 order, not a bug -------------------------------------------------------


@case(exporter=TS, expect=AGREE, tags=["benign", "precision"])
def sum_of_a_million_positive():
    """Row sums over 2^18 positive values: sequential and blocked float32 summation differ by far more than
    the fixed tolerance, and both are within γₙ·Σ|x|."""
    return Fn(lambda p, x: x.sum(-1)), (torch.rand(2, 1 << 18, generator=torch.Generator().manual_seed(3)) + 1,)


@case(exporter=TS, expect=AGREE, tags=["benign", "precision"])
def running_mean_long():
    """A running total over 2^16 samples with a large offset (cumsum), per element within its prefix bound."""
    return Fn(lambda p, x: x.cumsum(-1)), (randn(2, 1 << 16) + 50,)


def _exclusive(model):
    for node in nodes_of(model, "CumSum"):
        set_attribute(node, "exclusive", 1)
    return model


@case(exporter=TS, expect="mismatch", tags=["fault", "precision"], onnx_transform=_exclusive)
def cumsum_made_exclusive():
    """An off-by-one prefix sum over a long row: the summation bound of a long row must not hide it."""
    return Fn(lambda p, x: x.cumsum(-1)), (randn(2, 1 << 14) + 50,)
