"""The model under test stays as its factory made it, whatever an exporter or a backend does to it."""

import torch

from difftest.export.exporter import export
from difftest.suite.model_io import FlatModule, signature_of
from difftest.worker.state_guard import ModelGuard


class BatchNormNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def _trained_bn():
    torch.manual_seed(0)
    model = BatchNormNet()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    return model.eval()


def _export_guarded(model, x):
    """Eager output before, a guarded TorchScript export, and what the guard found after it."""
    with torch.inference_mode():
        before = model(x)
    guard = ModelGuard.record(model)
    signature, example = signature_of(model, (x,), None)
    result = export(FlatModule(model, signature).for_export(), tuple(example), ["output"], exporter="torchscript")
    assert result.ok, result.error
    return before, guard.check("the torchscript export")


def test_torchscript_export_of_batchnorm_leaves_eager_unchanged():
    model = _trained_bn()
    x = torch.randn(2, 3, 8, 8)
    before, found = _export_guarded(model, x)
    assert not model.training and not model.bn.training  # restored, whatever the exporter left
    with torch.inference_mode():
        after = model(x)
    assert torch.equal(before, after)
    # The exporter no longer flips the mode (the adapter mirrors the model's); if it did, the guard says so.
    assert all("restored" in f for f in found)


def test_mode_flip_is_reported_and_restored():
    model = _trained_bn()
    guard = ModelGuard.record(model)
    model.train()
    (found,) = guard.check("the torchscript export")
    assert "switched" in found and "training mode" in found and "restored" in found
    assert not model.training and not model.bn.training


class WritesWhenTraced(torch.nn.Module):
    """Stands in for an exporter that writes into the model's weights while tracing."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        if torch.jit.is_tracing():
            with torch.no_grad():
                self.lin.weight.mul_(3.0)
        return self.lin(x)


def test_planted_weight_write_is_reported_and_undone():
    torch.manual_seed(0)
    model = WritesWhenTraced().eval()
    x = torch.randn(2, 4)
    before, (found,) = _export_guarded(model, x)
    assert "wrote into parameter 'lin.weight'" in found and "restored" in found
    with torch.inference_mode():
        assert torch.equal(model(x), before)


def test_a_run_records_state_changes_on_the_case(tmp_path):
    import polars as pl

    from difftest.cli import main

    suite = tmp_path / "stateful_suite.py"
    suite.write_text(
        "import torch\nfrom difftest import case\n\n"
        "class Counter(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.register_buffer('calls', torch.zeros(()))\n"
        "    def forward(self, x):\n        self.calls += 1\n        return x * 2\n\n"
        "@case(exporter='torchscript')\ndef counter():\n    return Counter().eval(), (torch.ones(3),)\n"
    )
    out = tmp_path / "run"
    assert main(["run", str(suite), "--backends", "torch,ort-cpu", "--out", str(out), "--probes", "base"]) == 0
    (row,) = pl.read_parquet(out / "cases.parquet").to_dicts()
    assert any("wrote into buffer 'calls'" in change for change in row["state_changes"]), row["state_changes"]


class _Counting(torch.nn.Module):
    """Counts its forwards in a buffer and scales by the count: every run should see count == 1."""

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("running", torch.zeros(3))

    def forward(self, x):
        self.count += 1
        self.running.mul_(0.5).add_(x)  # a running mean, updated in place
        return x * self.count + self.running


def test_the_oracle_starts_every_probe_from_the_model_as_the_factory_made_it():
    import numpy as np

    from difftest.backends import Subject
    from difftest.backends.torch_eager import TorchEager, TorchFloat64

    model = _Counting()
    signature, _ = signature_of(model, (torch.ones(3),), {})
    subject = Subject(
        module=model, input_names=signature.names, output_names=["output"], call=FlatModule(model, signature)
    )
    oracle = TorchFloat64()
    session = oracle.prepare(subject)
    probes = [np.full(3, v, dtype=np.float32) for v in (1.0, 2.0, 3.0)]
    got = [oracle.run(session, {"x": p})[0] for p in probes]
    assert [g.tolist() for g in got] == [(p * 2).tolist() for p in probes]  # count 1 and running == x, every time
    again = oracle.run(session, {"x": probes[0]})[0]
    assert again.tolist() == got[0].tolist()
    assert float(model.count) == 0.0  # the factory's model itself is untouched by the oracle's copy
    assert TorchEager().prepare(subject) is subject  # the reference runs the factory's model (the guard restores it)
