"""One conformance test module for every registered backend."""

import numpy as np
import pytest
import torch

from difftest.backends import REGISTRY, Subject
from difftest.backends.candidates import make
from difftest.export.exporter import export
from difftest.suite.model_io import FlatModule, signature_of, to_feeds


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x, *, scale):
        return self.lin(x) * scale, x.argmax(-1)


@pytest.fixture(scope="module")
def subject():
    torch.manual_seed(0)
    module = Small().eval()
    signature, example = signature_of(module, (torch.randn(3, 4),), {"scale": torch.tensor(2.0)})
    flat = FlatModule(module, signature)
    exported = export(flat, tuple(example), ["y", "idx"], exporter="torchscript")
    assert exported.ok, exported.error
    subj = Subject(module, signature.names, ["y", "idx"], flat, onnx_bytes=exported.onnx_bytes,
                   graph_inputs=exported.graph_inputs)
    return subj, to_feeds(signature.names, example)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_availability_never_raises(name):
    reason = make(name).unavailable_reason()
    assert reason is None or (isinstance(reason, str) and reason)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_backend_runs_and_agrees_with_eager(name, subject):
    # Full precision: TF32 (on by default in ORT's CUDA provider) is judged by the classifier, not here.
    spec = f"{name}[tf32=0]" if "tf32" in REGISTRY[name].settings else name
    if "precision" in REGISTRY[name].settings:  # OpenVINO's bf16 default is judged by blame, not here
        spec = f"{name}[precision=f32]"
    backend = make(spec, threads=1)
    reason = backend.unavailable_reason()
    if reason:
        pytest.skip(f"{name} is not available here: {reason}")
    subj, feeds = subject
    outputs = backend.run(backend.prepare(subj), feeds)
    reference = make("torch").run(subj, feeds)
    assert len(outputs) == 2
    np.testing.assert_allclose(outputs[0], reference[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outputs[1], reference[1])
    assert list(backend.providers(backend.prepare(subj)))


def test_ort_cuda_says_why_it_is_unavailable():
    reason = make("ort-cuda").unavailable_reason()
    if reason is None:
        pytest.skip("a CUDA provider is present: the skip path is not reachable here")
    assert "CUDAExecutionProvider" in reason and "onnxruntime-gpu" in reason


def test_graph_inputs_follow_the_case_names(subject):
    subj, _ = subject
    assert subj.graph_inputs == ["x", "scale"]
