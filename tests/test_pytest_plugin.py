"""The pytest plugin, run by pytest itself (pytester): the fixture, collection of @case factories, -k, xfail and
skip, evidence in failures, JUnit properties and one report for the session.

Each inner pytest runs in its own process: pytester's in-process mode forgets the modules a session imported,
and importing onnxruntime's native module a second time in one process crashes it."""

import re
from importlib import metadata

import onnxruntime
import pytest
import torch  # noqa: F401  (imported before pytester snapshots sys.modules: the outer process imports suites too)

from difftest.suite.discover import collect

pytest_plugins = ["pytester"]

SUITE = '''
import torch
from difftest import Case, case


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


def _mul_to_add(model):
    for node in model.graph.node:
        if node.op_type == "Mul":
            node.op_type = "Add"
    return model


@case(exporter="torchscript", tags=["vision"])
def resnet_like():
    """Agrees."""
    return Double().eval(), (torch.arange(6.0).reshape(2, 3),)


@case(exporter="torchscript", onnx_transform=_mul_to_add)
def wrong_op():
    """The graph adds where eager multiplies."""
    return Double().eval(), (torch.arange(6.0).reshape(2, 3),)


@case(exporter="torchscript", onnx_transform=_mul_to_add, expect="mismatch")
def wrong_op_expected():
    """The same, declared."""
    return Double().eval(), (torch.arange(6.0).reshape(2, 3),)
'''

TEST_WITH_FIXTURE = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.l = torch.nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.l(x))


class Wrong(torch.nn.Module):
    def forward(self, x):
        return x.flip(-1)


def _reverse_back(model):
    model.graph.node.remove(model.graph.node[0])
    model.graph.output[0].name = model.graph.input[0].name
    return model


def test_net_agrees(difftest):
    result = difftest(Net().eval(), (torch.randn(2, 4),))
    result.raise_for_failures()
    assert result.outcomes[0].case.endswith("::test_net_agrees")


def test_a_wrong_graph_fails_with_the_evidence(difftest):
    difftest(Wrong().eval(), (torch.arange(6.0).reshape(2, 3),), exporter="torchscript",
             onnx_transform=_reverse_back).raise_for_failures()
"""

FAST = ["--difftest-backends", "ort-cpu", "--difftest-probes", "base", "-p", "no:cacheprovider"]


def test_the_plugin_is_registered_and_inert_unless_used(pytester):
    assert any(
        e.name == "difftest" and e.value == "difftest.pytest_plugin" for e in metadata.entry_points(group="pytest11")
    )
    pytester.makepyfile(zoo=SUITE, test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)  # without --difftest the @case factories are not tests
    assert "difftest report" not in result.stdout.str()


def test_cases_are_collected_one_test_per_candidate(pytester):
    pytester.makepyfile(zoo=SUITE)
    result = pytester.runpytest_subprocess("--difftest", "zoo.py", *FAST, "-rfx")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    out = result.stdout.str()
    # the failure is the classified evidence, with the blame, not a bare allclose
    assert "zoo::wrong_op [ort-cpu]: unexpected mismatch" in out
    assert re.search(r"5 of 6 elements \(83.3%\) beyond rtol=", out) and "blame: onnx_transform" in out
    assert "mismatch, as the case expects" in out  # the xfail says why


def test_k_selects_the_cases_difftest_run_k_selects(pytester):
    pytester.makepyfile(zoo=SUITE)
    result = pytester.runpytest_subprocess("--difftest", "zoo.py", "-k", "resnet", *FAST)
    result.assert_outcomes(passed=1, deselected=2)
    assert [r.name for r, _ in collect([str(pytester.path / "zoo.py")], "resnet")] == ["resnet_like"]
    tagged = pytester.runpytest_subprocess("--difftest", "zoo.py", "-k", "vision", *FAST)  # tags are keywords too
    tagged.assert_outcomes(passed=1, deselected=2)


def test_a_candidate_that_cannot_run_here_is_skipped_with_the_reason(pytester):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has ORT's CUDA provider: ort-cuda runs")
    pytester.makepyfile(zoo=SUITE)
    result = pytester.runpytest_subprocess(
        "--difftest",
        "zoo.py",
        "-k",
        "resnet",
        "--difftest-backends",
        "ort-cpu,ort-cuda",
        "--difftest-probes",
        "base",
        "-rs",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1, skipped=1, deselected=4)
    assert "CUDAExecutionProvider" in result.stdout.str()


def test_the_fixture_checks_in_the_test_and_fails_with_the_evidence(pytester):
    pytester.makepyfile(test_models=TEST_WITH_FIXTURE)
    result = pytester.runpytest_subprocess(*FAST)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "AssertionError: difftest check test_models::test_a_wrong_graph_fails_with_the_evidence: FAIL" in out
    assert "ort-cpu" in out and "FAIL" in out
    assert "run pytest with --difftest-report DIR" in out  # a hint the test can act on, not an object it never sees


def test_junit_and_one_report_for_the_session(pytester):
    pytester.makepyfile(zoo=SUITE, test_models=TEST_WITH_FIXTURE)
    report = pytester.path / "report"
    result = pytester.runpytest_subprocess("--difftest", *FAST, f"--difftest-report={report}", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2, failed=2, xfailed=1)
    assert f"difftest report: {report / 'index.html'}" in result.stdout.str()
    index = (report / "index.html").read_text()
    for case_id in ("zoo::resnet_like", "zoo::wrong_op", "test_models::test_net_agrees"):
        assert case_id in index
    junit = (pytester.path / "junit.xml").read_text()
    assert '<property name="verdict" value="mismatch" />' in junit
    assert '<property name="blame" value="onnx_transform" />' in junit
    assert re.search(r'<property name="difftest ort-cpu" value="(exact|numeric) \(pass\)" />', junit)


def test_a_broken_suite_file_is_a_collection_error_that_names_the_line(pytester):
    pytester.makepyfile(zoo="import torch\nfrom difftest import case\n\n@case(\ndef broken():\n    pass\n")
    result = pytester.runpytest_subprocess("--difftest", "zoo.py", *FAST)
    assert result.ret != 0
    assert re.search(r"zoo.py:\d+: syntax error in suite file", result.stdout.str())


# --- issue 22: the plugin keeps the guarantees the CLI gives ---------------------------------------------------


def test_two_suite_files_of_one_name_are_refused_not_mixed(pytester):
    """a/models.py and b/models.py: the second file's cases got the first one's results ("2 passed")."""
    agrees = (
        SUITE.split("@case(")[0]
        + """
@case(exporter="torchscript")
def same():
    return Double().eval(), (torch.arange(6.0).reshape(2, 3),)
"""
    )
    wrong = agrees.replace('@case(exporter="torchscript")', '@case(exporter="torchscript", onnx_transform=_mul_to_add)')
    for folder, body in (("a", agrees), ("b", wrong)):
        pytester.mkdir(folder)
        (pytester.path / folder / "models.py").write_text(body)
    result = pytester.runpytest_subprocess("--difftest", "a", "b", *FAST)
    out = result.stdout.str()
    assert result.ret != 0 and "2 passed" not in out
    assert "two suite files share the name 'models'" in out
    assert str(pytester.path / "a" / "models.py") in out and str(pytester.path / "b" / "models.py") in out


FIXTURE_CASES = (
    TEST_WITH_FIXTURE.split("def test_net_agrees")[0]
    + """
import pytest
import difftest as difftest_api


def test_only_candidate_skipped(difftest):
    difftest(Net().eval(), (torch.randn(2, 4),), backends=["ort-cuda"]).raise_for_failures()


def test_api_raise_for_failures_does_not_pass_what_was_not_compared():
    result = difftest_api.check(Net().eval(), (torch.randn(2, 4),), backends=["ort-cuda"], probes=["base"])
    with pytest.raises(AssertionError, match="nothing was compared"):
        result.raise_for_failures()


def test_own_settings(difftest):
    difftest(Net().eval(), (torch.randn(2, 4),), backends=["ort-cpu[opt=disable]"], probes=["base"],
             exporter="torchscript").raise_for_failures()


def test_session_settings(difftest):
    difftest(Net().eval(), (torch.randn(2, 4),)).raise_for_failures()


def test_nobody_looks(difftest):
    difftest(Wrong().eval(), (torch.arange(6.0).reshape(2, 3),), exporter="torchscript",
             onnx_transform=_reverse_back)


def test_a_wrong_graph_fails_with_the_evidence(difftest):
    difftest(Wrong().eval(), (torch.arange(6.0).reshape(2, 3),), exporter="torchscript",
             onnx_transform=_reverse_back).raise_for_failures()
"""
)


def test_fixture_skips_warns_reports_every_call_and_hides_its_frames(pytester):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has ORT's CUDA provider: ort-cuda runs")
    pytester.makepyfile(test_models=FIXTURE_CASES)
    report = pytester.path / "report"
    result = pytester.runpytest_subprocess(*FAST, f"--difftest-report={report}", "-rs")
    result.assert_outcomes(passed=4, failed=1, skipped=1)
    out = result.stdout.str()
    # the only candidate could not run: a skip with the reason, not a green test
    assert re.search(r"SKIPPED .*nothing was compared: ort-cuda: .*CUDAExecutionProvider", out)
    # a result nobody looked at (and it failed) is said at teardown
    assert "test_nobody_looks" in out and "was never checked (it FAILED)" in out
    # the failure: the evidence, a hint the test can act on, and no difftest frames
    assert f"the full evidence: {report / 'index.html'}" in out and "result.verdicts" not in out
    assert "def raise_for_failures" not in out and "def __call__" not in out
    # every call is in the session's report, whatever settings it gave
    index = (report / "index.html").read_text()
    for name in ("test_own_settings", "test_session_settings", "test_nobody_looks"):
        assert f"test_models::{name}" in index
    import json

    summary = json.loads((report / "summary.json").read_text())
    failing = {(f["case"], f["candidate"]) for f in summary["failures"]}
    assert ("test_models::test_own_settings", "ort-cpu") not in failing  # not lost: not applicable to that call
    assert ("test_models::test_own_settings", "ort-cpu[opt=disable]") not in failing
    assert ("test_models::test_a_wrong_graph_fails_with_the_evidence", "ort-cpu") in failing


def test_the_options_help_names_the_default_check_candidates():
    from difftest.backends import DEFAULT_CHECK_CANDIDATES
    from difftest.pytest_plugin import CHECK_CANDIDATES_TEXT

    assert CHECK_CANDIDATES_TEXT == ",".join(DEFAULT_CHECK_CANDIDATES)
