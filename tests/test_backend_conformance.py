"""Conformance: every registered backend, the same checks (parametrized over ``REGISTRY``, so a new backend is covered
by its registry line). Availability never raises; outputs come in the subject's order, named positions keep their
dtypes (float, integer, boolean), empty and zero-size tensors work, reruns are independent of each other, teardown
never raises; and every ONNX backend can expose intermediate values for localization. A backend not available here
is skipped with its reason."""

from pathlib import Path

import numpy as np
import pytest
import torch

from difftest.backends import REGISTRY, Subject
from difftest.backends.candidates import make, parse, with_settings
from difftest.errors import UsageError
from difftest.export.exporter import export
from difftest.suite.cases import CaseRef
from difftest.suite.model_io import FlatModule, signature_of, to_feeds

NAMES = sorted(REGISTRY)
BASICS_MLP = CaseRef(str(Path(__file__).resolve().parent.parent / "suites" / "basics.py"), "mlp")
# Deliberately not alphabetical: a backend that sorts outputs by name would be caught.
OUTPUTS = ["z_scores", "a_index", "m_positive", "b_count", "e_empty"]


class Many(torch.nn.Module):
    """Float, int64, bool, int32 outputs and a zero-size one."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x, n):
        return self.lin(x), x.argmax(-1), x > 0, n * 2 + 1, x[:, :0] * 2


@pytest.fixture(scope="module")
def subject():
    torch.manual_seed(0)
    module = Many().eval()
    x, n = torch.randn(5, 4), torch.arange(5, dtype=torch.int32)
    signature, example = signature_of(module, (x, n), {})
    flat = FlatModule(module, signature)
    exported = export(
        flat, tuple(example), OUTPUTS, exporter="torchscript", dynamic_axes={"x": {0: "batch"}, "n": {0: "batch"}}
    )
    assert exported.ok, exported.error
    subj = Subject(
        module, signature.names, list(OUTPUTS), flat, onnx_bytes=exported.onnx_bytes, graph_inputs=exported.graph_inputs
    )
    return subj, to_feeds(signature.names, example)


def full_precision(name: str) -> str:
    """The backend at full float32 precision, read from the precision controls it declares (tf32=0, precision=f32):
    reduced precision by default is judged by the classifier and blame, not here."""
    changes = {}
    for control in REGISTRY[name].declared_controls():
        if control.rule in ("tf32_control", "precision_control"):
            changes.update(control.changes())
    return with_settings(parse(name), **changes) if changes else name


def usable(name: str):
    backend = make(full_precision(name), threads=1)
    reason = backend.unavailable_reason()
    if reason:
        pytest.skip(f"{name} is not available here: {reason}")
    return backend


def expected_dtype(name: str, reference: np.ndarray) -> np.dtype:
    if name == "torch-fp64" and reference.dtype.kind == "f":
        return np.dtype(np.float64)  # the oracle runs in float64 by design
    return reference.dtype


@pytest.mark.parametrize("name", NAMES)
def test_availability_reason_never_raises(name):
    for options in ({}, {"threads": "1"}):
        reason = REGISTRY[name](threads=None, options=options).unavailable_reason()
        assert reason is None or (isinstance(reason, str) and reason.strip())


@pytest.mark.parametrize("name", NAMES)
def test_declared_settings_and_controls_are_consistent(name):
    cls = REGISTRY[name]
    for key, values in cls.setting_values.items():
        assert key in cls.settings and values
        parse(f"{name}[{key}={values[0]}]")  # every declared value is accepted
        with pytest.raises(UsageError, match="one of"):
            parse(f"{name}[{key}=no-such-value]")
    for control in cls.declared_controls():
        assert control.setting in cls.settings
        assert parse(with_settings(parse(name), **control.changes())).backend == name


@pytest.mark.parametrize("name", NAMES)
def test_outputs_in_order_with_their_dtypes(name, subject):
    backend = usable(name)
    subj, feeds = subject
    session = backend.prepare(subj)
    try:
        outputs = backend.run(session, feeds)
        assert list(backend.providers(session))
    finally:
        backend.teardown(session)
    reference = make("torch").run(subj, feeds)
    assert len(outputs) == len(OUTPUTS)
    for output, got, want in zip(OUTPUTS, outputs, reference):
        assert isinstance(got, np.ndarray), output
        assert got.shape == want.shape, output
        assert got.dtype == expected_dtype(name, want), (output, got.dtype, want.dtype)
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=output)
        else:
            np.testing.assert_array_equal(got, want, err_msg=output)


@pytest.mark.parametrize("name", NAMES)
def test_zero_size_batch(name, subject):
    backend = usable(name)
    subj, feeds = subject
    if name != "torch" and not REGISTRY[name].needs_onnx and name != "torch-fp64":
        pass  # eager variants run the model as well: same check
    empty = {"x": feeds["x"][:0], "n": feeds["n"][:0]}
    session = backend.prepare(subj)
    try:
        outputs = backend.run(session, empty)
    finally:
        backend.teardown(session)
    reference = make("torch").run(subj, empty)
    for output, got, want in zip(OUTPUTS, outputs, reference):
        assert got.shape == want.shape, (output, got.shape, want.shape)
        assert got.dtype == expected_dtype(name, want), output


@pytest.mark.parametrize("name", NAMES)
def test_reruns_are_independent(name, subject):
    backend = usable(name)
    subj, feeds = subject
    session = backend.prepare(subj)
    try:
        first = backend.run(session, feeds)
        kept = [a.copy() for a in first]
        for array in first:  # a caller writing into what it got must not change the next run
            if array.size and array.flags.writeable:
                array.fill(0)
        second = backend.run(session, feeds)
    finally:
        backend.teardown(session)
    for output, a, b in zip(OUTPUTS, kept, second):
        np.testing.assert_array_equal(a, b, err_msg=output)


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].needs_onnx])
def test_onnx_backends_expose_intermediate_values(name, subject):
    """Localization's evaluation runs through the backend's own prepare/run: every ONNX backend gives the values
    the graph computes inside, as ONNX Runtime does."""
    import onnx

    from difftest.localize.divergence import _all_values, evaluate

    backend = usable(name)
    if make("ort-cpu").unavailable_reason():
        pytest.skip("ort-cpu is the yardstick here and is not available")
    subj, feeds = subject
    model = onnx.load_from_string(subj.onnx_bytes)
    names = _all_values(model)
    got = evaluate(model, names, feeds, backend)
    want = evaluate(model, names, feeds, make("ort-cpu"))
    assert set(want) <= set(got) and len(want) >= len(OUTPUTS)
    for value in want:
        np.testing.assert_allclose(
            got[value].astype(np.float64), want[value].astype(np.float64), rtol=1e-5, atol=1e-5, err_msg=value
        )


@pytest.mark.parametrize("name", [n for n in NAMES if not REGISTRY[n].needs_onnx and n not in ("torch", "torch-fp64")])
def test_model_backends_say_what_localization_can_do_instead(name):
    from difftest.localize.divergence import localize

    result = localize(BASICS_MLP, candidate=name)
    assert result.status == "unsupported" and "Instead:" in result.reason


def test_localize_against_onnx_ref_goes_through_its_own_run():
    """Localizing against onnx-ref used to fail with an AttributeError (it built ORT sessions itself)."""
    from difftest.localize.divergence import localize

    result = localize(BASICS_MLP, candidate="ort-cpu", reference="onnx-ref")
    assert result.status in ("no_divergence", "found"), result.reason


def test_localize_openvino_at_its_default_precision():
    """OpenVINO is localized like ORT (its own prepare/run with values exposed); at bf16 a matrix product is the first
    value that diverges beyond the noise budget."""
    from difftest.localize.divergence import localize

    backend = make("openvino")
    if backend.unavailable_reason():
        pytest.skip(f"openvino is not available here: {backend.unavailable_reason()}")
    result = localize(BASICS_MLP, candidate="openvino", reference="torch")
    assert result.status in ("found", "no_divergence"), result.reason
    if result.status == "found":
        assert result.culprit["op_type"] in ("MatMul", "Gemm", "Add", "Relu", "Tanh", "Gelu"), result.culprit
    result = localize(BASICS_MLP, candidate="openvino[precision=f32]", reference="ort-cpu")
    assert result.status == "no_divergence", result.reason


def test_openvino_records_the_precision_it_ran_at(subject):
    backend = make("openvino")
    if backend.unavailable_reason():
        pytest.skip(f"openvino is not available here: {backend.unavailable_reason()}")
    subj, _ = subject
    from difftest.backends.openvino import recorded_precision

    for spec, wanted in (("openvino", None), ("openvino[precision=f32]", "f32"), ("openvino[precision=bf16]", None)):
        ov = make(spec)
        session = ov.prepare(subj)
        found = recorded_precision(ov.providers(session))
        assert found in ("f32", "bf16", "f16"), (spec, ov.providers(session))
        if wanted:
            assert found == wanted
        ov.teardown(session)


def test_openvino_bf16_default_is_named_never_noise():
    """On a CPU where OpenVINO infers in bf16 by default, a linear layer's gap is blamed on the precision, with the
    f32 control's and both distances to the float64 oracle in the reason, and held to bf16's own tolerance: a
    reduced_precision warning (or a mismatch beyond it), never counted as float noise."""
    import difftest

    backend = make("openvino")
    if backend.unavailable_reason():
        pytest.skip(f"openvino is not available here: {backend.unavailable_reason()}")
    import openvino

    if str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()) != "bf16":
        pytest.skip("OpenVINO's CPU plugin does not default to bf16 on this CPU")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8)).eval()
    result = difftest.check(model, (torch.randn(4, 64),), backends=["openvino"], probes=["base"])
    frame = result.verdicts.to_dicts()
    row = next(r for r in frame if r["candidate"] == "openvino" and r["probe"] == "base")
    assert row["label"] in ("reduced_precision", "mismatch") and row["label"] != "numeric"
    assert row["passed"] == (row["label"] == "reduced_precision")
    assert row["blame"] == "precision:bf16" and row["blame_rule"] == "precision_control"
    assert "precision=f32" in row["blame_reason"] and "float64 oracle" in row["blame_reason"]
    assert "bf16's own tolerance" in row["blame_reason"]
