"""The Python API end to end: ``difftest.check`` on one model per verdict family, what a Result holds and says, its
report, and ``difftest.run`` (which the CLI's run goes through)."""

import functools

import polars as pl
import pytest
import torch

import difftest
from difftest.suite.graph_edit import edit_constant_input, swap_pad_begin_end

FAST = {"backends": ["ort-cpu"], "probes": ["base", "alt"], "cache": False}


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))

    def forward(self, x):
        return self.body(x)


class TopK(torch.nn.Module):
    def forward(self, x):
        return x.topk(3)


class PadRight(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.pad(x, (0, 2))


class Masked(torch.nn.Module):
    def forward(self, x, mask=None):
        return x * mask


class StableSort(torch.nn.Module):
    def forward(self, x):
        return x.sort(stable=True)


def test_a_model_that_agrees_passes_and_says_how_close():
    result = difftest.check(Mlp().eval(), (torch.randn(3, 8),), **FAST)
    assert result.passed and not result.failures
    (outcome,) = result.outcomes
    assert outcome.candidate == "ort-cpu" and outcome.label in ("exact", "numeric")
    text = str(result)
    assert text.startswith("difftest check test_api::Mlp: PASS") and "ort-cpu" in text
    assert result.raise_for_failures() is result
    frame = result.verdicts
    assert isinstance(frame, pl.DataFrame)
    assert set(frame["probe"]) == {"base", "alt"} and frame["passed"].all()
    assert {"label", "evidence", "max_abs", "rtol", "blame"} <= set(frame.columns)


def test_ties_are_tie_break_not_a_failure():
    tied = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    result = difftest.check(TopK().eval(), (tied,), backends=["ort-cpu"], probes=["base"], cache=False)
    assert result.passed
    assert result.outcomes[0].label == "tie_break"
    assert "tie" in str(result).lower()


def test_a_swapped_pad_is_layout_and_fails_with_the_evidence():
    result = difftest.check(
        PadRight().eval(),
        (torch.randn(1, 2, 3, 5),),
        backends=["ort-cpu"],
        probes=["base"],
        cache=False,
        exporter="torchscript",
        onnx_transform=edit_constant_input("Pad", 1, swap_pad_begin_end),
    )
    assert not result.passed
    (outcome,) = result.failures
    assert outcome.label == "layout"
    with pytest.raises(AssertionError) as raised:
        result.raise_for_failures()
    message = str(raised.value)
    assert "FAIL" in message and "layout" in message and outcome.evidence.split(";")[0] in message


def test_an_expected_verdict_is_an_expected_failure():
    result = difftest.check(
        PadRight().eval(),
        (torch.randn(1, 2, 3, 5),),
        backends=["ort-cpu"],
        probes=["base"],
        cache=False,
        exporter="torchscript",
        expect="layout",
        onnx_transform=edit_constant_input("Pad", 1, swap_pad_begin_end),
    )
    assert result.passed and result.outcomes[0].status == "xfail"


def test_a_baked_keyword_input_is_frozen_input():
    mask = (torch.rand(2, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    result = difftest.check(
        Masked().eval(),
        (torch.randn(2, 6),),
        {"mask": mask},
        backends=["ort-cpu"],
        probes=["base", "alt"],
        cache=False,
        exporter="torchscript",
        bake_kwargs=True,
    )
    assert not result.passed
    assert result.failures[0].label == "frozen_input" and "mask" in result.failures[0].evidence


def test_an_export_that_fails_is_export_error_blamed_on_the_exporter():
    result = difftest.check(
        StableSort().eval(), (torch.randn(2, 6),), backends=["ort-cpu"], probes=["base"], cache=False
    )
    (outcome,) = result.failures
    assert outcome.label == "export_error" and outcome.blame == "exporter"
    assert "export_error" in str(result)


def test_an_unavailable_candidate_is_skipped_with_the_reason():
    result = difftest.check(
        Mlp().eval(), (torch.randn(3, 8),), backends=["ort-cpu", "ort-cuda"], probes=["base"], cache=False
    )
    statuses = {o.candidate: o.status for o in result.outcomes}
    if statuses["ort-cuda"] == "skipped":
        assert result.passed and "CUDAExecutionProvider" in str(result)


def test_the_report_is_the_html_a_run_writes(tmp_path):
    result = difftest.check(Mlp().eval(), (torch.randn(3, 8),), **FAST)
    index = result.report(tmp_path / "report")
    assert index.name == "index.html" and "test_api::Mlp" in index.read_text()
    assert (tmp_path / "report" / "junit.xml").exists() and list((tmp_path / "report" / "cases").glob("*.html"))
    assert not list((tmp_path / "report").glob("onnx/*.onnx")) or all(
        p.stat().st_size for p in (tmp_path / "report").glob("onnx/*.onnx")
    )


def test_a_kept_run_folder_reports_in_place(tmp_path):
    out = tmp_path / "kept"
    result = difftest.check(Mlp().eval(), (torch.randn(3, 8),), out=out, name="mlp", **FAST)
    assert result.run_dir == out and (out / "parts").is_dir()
    assert result.report() == out / "index.html"
    with pytest.raises(difftest.errors.UsageError, match="already holds a run"):
        difftest.check(Mlp().eval(), (torch.randn(3, 8),), out=out, **FAST)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="unknown option.*rtoll"):
        difftest.check(Mlp(), (torch.randn(3, 8),), rtoll=1e-3)
    with pytest.raises(difftest.errors.UsageError, match="unknown backend"):
        difftest.check(Mlp(), (torch.randn(3, 8),), backends=["ort-gpu"])
    with pytest.raises(difftest.errors.UsageError, match="exporter must be dynamo or torchscript"):
        difftest.check(Mlp(), (torch.randn(3, 8),), exporter="onnxscript")
    with pytest.raises(difftest.errors.UsageError, match="unknown probe"):
        difftest.check(Mlp(), (torch.randn(3, 8),), probes=["base", "zeros"])


def test_a_session_holds_several_checks_in_one_report(tmp_path):
    session = difftest.Session(tmp_path / "session", **FAST)
    first = session.check(Mlp().eval(), (torch.randn(3, 8),))
    second = session.check(Mlp().eval(), (torch.randn(5, 8),))  # the same class: a numbered name, not a clash
    assert {o.case for o in first.outcomes + second.outcomes} == {"test_api::Mlp", "test_api::Mlp_2"}
    run = session.finish()
    assert run.passed and len(run.outcomes) == 2 and (tmp_path / "session" / "index.html").exists()


def test_run_goes_through_the_same_pipeline_as_the_cli(tmp_path, data_dir):
    run = difftest.run(
        str(data_dir / "passing_suite.py"),
        backends="torch,ort-cpu",
        probes="base",
        oracle=False,
        out=str(tmp_path / "run"),
    )
    assert isinstance(run, difftest.Run) and run.passed and run.exit_code == 0
    assert "no unexpected failures" in str(run)
    assert set(run.verdicts["candidate"]) == {"ort-cpu"}
    with pytest.raises(TypeError, match="unknown option.*backend\\b"):
        difftest.run(str(data_dir / "passing_suite.py"), backend="ort-cpu")


def test_the_cli_run_is_a_layer_over_the_api(monkeypatch, tmp_path, data_dir):
    import difftest.api
    from difftest.cli import main

    calls = []
    real = difftest.api.run

    def spy(targets, **options):
        calls.append((targets, options))
        return real(targets, **options)

    monkeypatch.setattr(difftest.api, "run", spy)
    assert (
        main(
            [
                "run",
                str(data_dir / "passing_suite.py"),
                "--backends",
                "torch,ort-cpu",
                "--probes",
                "base",
                "--no-oracle",
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    ((targets, options),) = calls
    assert targets == [str(data_dir / "passing_suite.py")] and options["backends"] == ["torch", "ort-cpu"]


def test_check_keeps_the_callers_model_as_it_was():
    model = Mlp().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    difftest.check(model, (torch.randn(3, 8),), **FAST)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training


def test_partial_models_work_too():
    mask = torch.ones(2, 6)
    result = difftest.check(functools.partial(Masked().eval(), mask=mask), (torch.randn(2, 6),), name="partial", **FAST)
    assert result.passed


def test_check_after_the_caller_used_openmp_does_not_hang():
    """A forked check of a process whose OpenMP pool ran (any large torch op in the caller) runs on one intra-op
    thread; putting the caller's first process state back must not restore its thread count (the child then waits
    for pool threads that do not exist after fork)."""
    import torch

    import difftest

    x = torch.randn(1500, 1500)
    (x @ x).sum()  # a parallel region in this process

    class Square(torch.nn.Module):
        def forward(self, a):
            return (a @ a.T).sum(-1)

    result = difftest.check(
        Square().eval(), (torch.randn(384, 384),), backends=["ort-cpu"], control_budget=0.0, probes=["base"]
    )
    assert {o.label for o in result.outcomes} <= {"exact", "numeric"}
