"""Cases whose verdicts rest on evidence the candidate did not produce: outputs under colliding names, a forward
that counts its calls, models that sample, a count frozen from a mask, embedding rows frozen by a trace, and an
integer fault after an in-range float-to-int Cast."""

import torch

from difftest import case


class Colliding(torch.nn.Module):
    def forward(self, x):
        return {"a-b": x + 1, "a_b": x * 2}


@case(expect="exact")
def colliding_output_names():
    """Dict keys that sanitize to one name: both outputs are judged."""
    return Colliding().eval(), (torch.randn(2, 3, generator=torch.Generator().manual_seed(0)),)


class CountsCalls(torch.nn.Module):
    """A forward that counts its calls in a buffer and scales by the count, with a running mean beside it."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))
        self.register_buffer("running", torch.zeros(4))

    def forward(self, x):
        self.calls += 1
        self.running.mul_(0.5).add_(x.mean(0) * 0.5)
        return x * self.calls + self.running


@case()
def counts_its_calls():
    """Every probe of every backend, the float64 oracle included, starts from the model as the factory made it."""
    return CountsCalls().eval(), (torch.randn(3, 4, generator=torch.Generator().manual_seed(1)),)


class Noisy(torch.nn.Module):
    def forward(self, x):
        return x + torch.rand_like(x)


@case(expect="nondeterministic")
def adds_uniform_noise():
    """rand_like: ORT draws other numbers than eager; the draws are judged by distribution."""
    return Noisy().eval(), (torch.randn(64, 32, generator=torch.Generator().manual_seed(2)),)


class Coin(torch.nn.Module):
    def forward(self, p):
        return torch.bernoulli(p)


@case(expect="nondeterministic")
def flips_coins():
    """bernoulli of a probability tensor."""
    return Coin().eval(), (torch.rand(32, 32, generator=torch.Generator().manual_seed(3)),)


class RandomMask(torch.nn.Module):
    def forward(self, x):
        keep = torch.randint(0, 4, x.shape) > 0  # randint masking, as token-dropping augmentations do
        return x * keep, keep.sum(-1)


@case(expect="nondeterministic")
def randint_masking():
    """randint drives a mask (through a float-to-int Cast of a uniform draw in the graph) and a count."""
    return RandomMask().eval(), (torch.randn(16, 64, generator=torch.Generator().manual_seed(4)),)


def _shift_noise(model):
    """A fault in a sampling graph: every output of the noisy model moved by +5."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    output = graph.output[0].name
    graph.initializer.append(numpy_helper.from_array(np.array(5.0, dtype=np.float32), "difftest_shift"))
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == output:
                node.output[i] = output + "_unshifted"
    graph.node.append(helper.make_node("Add", [output + "_unshifted", "difftest_shift"], [output]))
    return model


@case(expect="mismatch", onnx_transform=_shift_noise)
def noise_shifted_by_the_graph():
    """The same noise, but the graph adds 5: not a draw of the same distribution."""
    return Noisy().eval(), (torch.randn(64, 32, generator=torch.Generator().manual_seed(2)),)


class MaskedMean(torch.nn.Module):
    def forward(self, x, mask):
        picked = x[mask]
        return picked.sum() / len(picked)  # len() is a Python int while tracing: frozen to the traced count


@case(exporter="torchscript", expect="frozen_input")
def mean_over_mask_count_frozen():
    """The mean over a mask's True positions, whose count the trace froze; alt keeps the count, counts moves it."""
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(4, 6, generator=g) > 0.5
    return MaskedMean().eval(), (torch.randn(4, 6, generator=g), mask)


class BagOfRows(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.table = torch.nn.Embedding(10, 4)

    def forward(self, ids):
        rows = ids.reshape(-1).tolist()  # Python ints while tracing: which rows are selected is frozen
        return self.table.weight[rows].sum(0)


@case(exporter="torchscript", expect="frozen_input")
def embedding_rows_frozen():
    """A bag of embedding rows (order does not matter, so alt's permutation cannot tell) selected through Python
    ints that the trace froze; indices draws other rows."""
    return BagOfRows().eval(), (torch.tensor([[1, 7, 3], [2, 7, 9]]),)


def _plus_one_after_cast(model):
    """An integer fault after a float-to-int Cast of in-range values: the index output + 1."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    output = graph.output[0].name
    graph.initializer.append(numpy_helper.from_array(np.array(1, dtype=np.int64), "difftest_one"))
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == output:
                node.output[i] = output + "_before"
    graph.node.append(helper.make_node("Add", [output + "_before", "difftest_one"], [output]))
    return model


class Bucket(torch.nn.Module):
    def forward(self, x):
        return (x.clamp(min=0.0, max=0.999) * 10).long()  # bucket ids 0..9 through a float-to-int Cast of in-range values


@case(expect="mismatch", onnx_transform=_plus_one_after_cast)
def bucket_ids_off_by_one():
    """The graph's Cast converts values in [0, 10): defined, so the +1 is nobody's undefined behaviour."""
    return Bucket().eval(), (torch.rand(8, 8, generator=torch.Generator().manual_seed(7)),)
