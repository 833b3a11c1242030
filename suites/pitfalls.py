"""The deployment pitfalls of PyTorch -> ONNX, each in its simplest form.

Every case declares the verdict the harness must reach; a different verdict
fails the run, so the harness is checked as much as the exporters are.
"""

import torch
import torch.nn.functional as F

from difftest import Case, case
from difftest.suite.graph_edit import edit_constant_input, nodes_of, set_attribute, swap_pad_begin_end

WINDOWS = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]


class SlideInferenceInPlace(torch.nn.Module):
    """MMSeg-style slide inference: each window's prediction is added into a slice of the canvas."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, image):
        preds = torch.zeros(image.shape[0], 2, 8, 8)
        count = torch.zeros(image.shape[0], 1, 8, 8)
        for y1, x1 in WINDOWS:
            crop = self.head(image[:, :, y1 : y1 + 4, x1 : x1 + 4])
            preds[:, :, y1 : y1 + 4, x1 : x1 + 4] += crop
            count[:, :, y1 : y1 + 4, x1 : x1 + 4] += 1
        return preds / count


class SlideInferencePadded(SlideInferenceInPlace):
    """The export workaround: pad each window's prediction to the canvas size and add."""

    def forward(self, image):
        preds = torch.zeros(image.shape[0], 2, 8, 8)
        count = torch.zeros(image.shape[0], 1, 8, 8)
        for y1, x1 in WINDOWS:
            crop = self.head(image[:, :, y1 : y1 + 4, x1 : x1 + 4])
            pad = (x1, 8 - x1 - 4, y1, 8 - y1 - 4)  # PyTorch order: last dim first, (left, right, top, bottom)
            preds = preds + F.pad(crop, pad)
            count = count + F.pad(torch.ones_like(crop[:, :1]), pad)
        return preds / count


@case(tags=["pitfall", "slice-assign"])
def slide_inference_inplace():
    """Pitfall 1, the original form: `preds[:, :, y1:y2, x1:x2] += crop` over five overlapping windows.
    Older exporters could not export it; today both must export it and agree with eager."""
    torch.manual_seed(0)
    return SlideInferenceInPlace().eval(), (torch.randn(1, 3, 8, 8),)


@case(tags=["pitfall", "slice-assign"])
def slide_inference_padded():
    """Pitfall 1, the workaround: F.pad each crop to the canvas and add. Must agree with eager."""
    torch.manual_seed(0)
    return SlideInferencePadded().eval(), (torch.randn(1, 3, 8, 8),)


class PadRight(torch.nn.Module):
    def forward(self, x):
        return F.pad(x, (1, 3), value=0.0) * 2.0  # one column on the left, three on the right


@case(tags=["pitfall", "pad-order"], onnx_transform=edit_constant_input("Pad", 1, swap_pad_begin_end), expect="layout")
def pad_order_swapped():
    """Pitfall 2: a graph rewrite that read PyTorch's (left, right) pad pairs into ONNX's
    (begin..., end...) layout the wrong way round. Same values, shifted by two columns."""
    return PadRight().eval(), (torch.randn(1, 2, 3, 5),)


@case(tags=["pitfall", "pad-order"])
def pad_order_correct():
    """Pitfall 2, fixed: the exporter's own Pad, pads in ONNX order. Must agree."""
    return PadRight().eval(), (torch.randn(1, 2, 3, 5),)


class ResizeLike(torch.nn.Module):
    def __init__(self, frozen: bool):
        super().__init__()
        self.frozen = frozen

    def forward(self, x, guide):
        if self.frozen:
            size = tuple(int(s) for s in guide.shape[-2:])  # becomes a constant in the traced graph
        else:
            size = guide.shape[-2:]
        return F.interpolate(x, size=size, mode="nearest")


DYNAMIC = {"x": {2: "h", 3: "w"}, "guide": {2: "gh", 3: "gw"}}


@case(tags=["pitfall", "resize"], expect={"*": "shape_specialized", "openvino": ["shape_specialized", "shape"]})
def resize_size_from_int():
    """Pitfall 3: the output size built with int() from another tensor's shape is frozen into the traced
    (TorchScript) graph; right on the traced shape, wrong on any other.

    On OpenVINO at its bf16 default (CPUs with bfloat16 instructions) the traced shape's values differ by bf16
    rounding too, so "right on the traced shape" cannot be said and the verdict is the plain ``shape`` difference;
    at f32 (and on CPUs without bf16) it is ``shape_specialized`` like everywhere else."""
    return Case(
        ResizeLike(frozen=True).eval(),
        (torch.randn(1, 2, 4, 4), torch.randn(1, 1, 8, 6)),
        exporter="torchscript",
        dynamic_axes=DYNAMIC,
    )


@case(tags=["pitfall", "resize"])
def resize_size_from_shape():
    """Pitfall 3, fixed: the size taken from `guide.shape` stays symbolic in the graph."""
    return Case(
        ResizeLike(frozen=False).eval(),
        (torch.randn(1, 2, 4, 4), torch.randn(1, 1, 8, 6)),
        exporter="torchscript",
        dynamic_axes=DYNAMIC,
    )


class Masked(torch.nn.Module):
    def forward(self, x, *, mask):
        return (x * mask).sum(-1)


@case(tags=["pitfall", "kwargs"], bake_kwargs=True, expect="frozen_input")
def kwargs_baked():
    """Pitfall 4: the mask is given as a keyword argument and exported through functools.partial,
    so the graph holds it as a constant and ignores the mask it is fed."""
    return Masked().eval(), (torch.randn(2, 6),), {"mask": (torch.rand(2, 6) > 0.5).float()}


@case(tags=["pitfall", "kwargs"])
def kwargs_as_input():
    """Pitfall 4, fixed: the mask is a graph input (the exporter's kwargs=)."""
    return Masked().eval(), (torch.randn(2, 6),), {"mask": (torch.rand(2, 6) > 0.5).float()}


class ArgMax(torch.nn.Module):
    def forward(self, x):
        return x.argmax(-1)


def _select_last_index(model):
    for node in nodes_of(model, "ArgMax"):
        set_attribute(node, "select_last_index", 1)
    return model


def _argmax_to_argmin(model):
    for node in nodes_of(model, "ArgMax"):
        node.op_type = "ArgMin"
    return model


@case(tags=["pitfall", "ties"], expect="tie_break")
def argmax_ties():
    """Pitfall 5: on tied maxima a runtime may pick another index. This graph picks the last of the ties
    (select_last_index=1), eager the first: the values are tied, so this is tie-breaking, not a bug."""
    return Case(ArgMax().eval(), (torch.tensor([[1.0, 3.0, 3.0], [5.0, 5.0, 0.0]]),), onnx_transform=_select_last_index)


@case(tags=["pitfall", "ties"])
def argmax_no_ties():
    """Pitfall 5, control: distinct values, one right answer; both must agree exactly."""
    return ArgMax().eval(), (torch.tensor([[1.0, 3.0, 2.0], [5.0, 4.0, 0.0]]),)


@case(tags=["pitfall", "ties"], expect="mismatch")
def argmax_wrong_index():
    """Pitfall 5, the real bug it must not hide: a graph that computes ArgMin instead of ArgMax."""
    return Case(ArgMax().eval(), (torch.tensor([[1.0, 3.0, 2.0], [5.0, 4.0, 0.0]]),), onnx_transform=_argmax_to_argmin)


class TopBoxes(torch.nn.Module):
    def forward(self, scores, boxes):
        top, index = scores.topk(4)
        return top, boxes[index]


@case(tags=["pitfall", "nms"], expect="tie_break")
def nms_equal_scores():
    """Pitfall 6: NMS-style decoding keeps the top-4 boxes by score; three boxes score exactly 0.9, so
    runtimes may return them in another order. The scores agree; the boxes agree as a set."""
    scores = torch.tensor([0.9, 0.5, 0.9, 0.3, 0.9, 0.1])
    boxes = torch.arange(24.0).reshape(6, 4)
    return TopBoxes().eval(), (scores, boxes)


@case(tags=["pitfall", "nms"])
def nms_distinct_scores():
    """Pitfall 6, control: every score distinct, so there is one right order; boxes must agree exactly."""
    scores = torch.tensor([0.9, 0.5, 0.8, 0.3, 0.7, 0.1])
    boxes = torch.arange(24.0).reshape(6, 4)
    return TopBoxes().eval(), (scores, boxes)
