"""torch-cuda runs the whole model on the device: placement tested on the meta device here (no GPU needed),
and for real where a GPU is present."""

import numpy as np
import pytest
import torch

from difftest.backends import Subject
from difftest.backends.torch_eager import ModelFault, TorchOnDevice, mixed_devices
from difftest.suite.model_io import FlatModule, signature_of, to_feeds


class Everywhere(torch.nn.Module):
    """Tensors in every place a case keeps them: parameters, buffers, a plain attribute, a list attribute,
    a BatchNorm's running statistics, an index input, a kwarg, and a mask created inside forward."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.bn = torch.nn.BatchNorm1d(4)
        self.register_buffer("offset", torch.ones(4))
        self.scale = torch.full((4,), 2.0)  # not a parameter, not a buffer
        self.table = [torch.arange(4.0)]

    def forward(self, x, index, *, weights):
        mask = torch.triu(torch.ones(x.shape[0], x.shape[0]), diagonal=1).bool()  # created without device=
        y = self.bn(self.lin(x)) * self.scale + self.offset + self.table[0]
        y = y.index_add(0, index, weights)
        return y.masked_fill(mask[:, :1].expand_as(y), 0.0)


def _subject(module, args, kwargs):
    signature, example = signature_of(module, args, kwargs)
    return Subject(module, signature.names, ["out"], FlatModule(module, signature)), to_feeds(signature.names, example)


def test_every_tensor_a_case_passes_lands_on_the_device():
    module = Everywhere().eval()
    subject, feeds = _subject(module, (torch.randn(3, 4), torch.tensor([0, 2, 0])), {"weights": torch.ones(3, 4)})
    backend = TorchOnDevice()
    placed = backend.prepare(subject)
    tensors = [t for t in placed.module.state_dict().values()] + [placed.module.scale, placed.module.table[0]]
    assert all(t.device.type == "meta" for t in tensors)
    assert module.scale.device.type == "cpu" and module.lin.weight.device.type == "cpu"  # the original is untouched
    live = [torch.from_numpy(feeds[n]).to("meta") for n in placed.input_names]
    with torch.device("meta"), torch.inference_mode():
        (out,) = placed.call(*live)
    assert out.device.type == "meta" and tuple(out.shape) == (3, 4)


INDEX = torch.tensor([0, 2, 2, 1])  # a constant the forward functions read from the module's globals


class Op(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


class UsesGlobal(torch.nn.Module):
    def forward(self, x):
        return x.index_select(0, INDEX)


def test_tensors_a_forward_reads_from_globals_and_closures_are_moved():
    offset = torch.ones(2)
    for module in (Op(lambda x, v: x.index_add(0, INDEX, v) + offset), UsesGlobal()):
        args = (torch.zeros(3, 2), torch.ones(4, 2)) if isinstance(module, Op) else (torch.randn(3, 2),)
        subject, feeds = _subject(module.eval(), args, None)
        placed = TorchOnDevice().prepare(subject)
        live = [torch.from_numpy(feeds[n]).to("meta") for n in placed.input_names]
        with torch.device("meta"), torch.inference_mode():
            (out,) = placed.call(*live)
        assert out.device.type == "meta"
    assert INDEX.device.type == "cpu" and UsesGlobal.forward.__globals__["INDEX"].device.type == "cpu"


class MixesDevices(torch.nn.Module):
    def forward(self, x):
        return x + torch.ones(x.shape, device="cpu")  # an explicit device the harness cannot move


def test_a_model_that_still_mixes_devices_is_a_finding_about_the_model():
    subject, feeds = _subject(MixesDevices(), (torch.randn(2, 2),), None)
    backend = TorchOnDevice()
    with pytest.raises(ModelFault, match="mixes devices"):
        backend.run(backend.prepare(subject), feeds)


def test_device_errors_name_the_op():
    assert (
        mixed_devices(
            "Expected all tensors to be on the same device, but got index is on cpu, different from "
            "other tensors on cuda:0 (when checking argument for argument index in method "
            "wrapper_CUDA__index_add_)"
        )
        == " in index_add_"
    )
    assert (
        mixed_devices("expected self and mask to be on the same device, but got mask on cuda:0 and self on cpu")
        == " (between self and mask)"
    )
    assert mixed_devices("CUDA out of memory") is None


def test_the_real_gpu_runs_the_whole_model():
    from difftest.backends.candidates import make

    backend = make("torch-cuda")
    reason = backend.unavailable_reason()
    if reason:
        pytest.skip(f"torch-cuda is not available here: {reason}")
    module = Everywhere().eval()
    subject, feeds = _subject(module, (torch.randn(3, 4), torch.tensor([0, 2, 0])), {"weights": torch.ones(3, 4)})
    (got,) = backend.run(backend.prepare(subject), feeds)
    (want,) = make("torch").run(subject, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
