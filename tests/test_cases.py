import pytest
import torch

from difftest import Case, case
from difftest.suite.cases import CaseDefinitionError, build
from difftest.suite.discover import SuiteLoadError, collect
from difftest.errors import UsageError


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


def test_decorator_keeps_options_and_docstring():
    @case(tags=["a"], exporter="torchscript", expect="mismatch")
    def my_case():
        """Shown in the report."""
        return Identity().eval(), (torch.ones(1),)

    assert my_case.name == "my_case"
    assert my_case.doc == "Shown in the report."
    built = build(my_case)
    assert built.exporter == "torchscript" and built.expect == "mismatch" and built.tags == ["a"]
    assert built.description == "Shown in the report."


def test_factory_forms_normalise():
    three = build(case(lambda: (Identity(), (torch.ones(1),), {"y": torch.ones(1)})))
    assert three.kwargs == {"y": torch.ones(1)}
    single_arg = build(case(lambda: (Identity(), torch.ones(1))))
    assert isinstance(single_arg.args, tuple) and len(single_arg.args) == 1
    full = build(case(lambda: Case(Identity(), (torch.ones(1),), opset=18), tags=["x"]))
    assert full.opset == 18 and full.tags == ["x"]


def test_factory_returning_wrong_thing_is_explained():
    with pytest.raises(CaseDefinitionError, match="return \\(module, args\\)"):
        build(case(lambda: 42, name="bad"))


def test_unknown_option_and_exporter_are_rejected():
    with pytest.raises(TypeError, match="unknown option"):
        case(tag=["typo"])
    with pytest.raises(ValueError, match="exporter must be one of"):
        case(exporter="onnx-tf")


def test_collect_folder_file_and_single_case(data_dir):
    ids = [ref.id for ref, _ in collect([str(data_dir / "tiny_suite.py")])]
    assert ids[:2] == ["tiny_suite::double", "tiny_suite::affine"]
    assert [r.id for r, _ in collect([str(data_dir / "tiny_suite.py") + "::affine"])] == ["tiny_suite::affine"]
    assert [r.id for r, _ in collect([str(data_dir / "tiny_suite.py")], keyword="WRONG_OP")] == [
        "tiny_suite::wrong_op",
        "tiny_suite::wrong_op_expected",
    ]


def test_missing_case_and_target_are_usage_errors(data_dir):
    with pytest.raises(UsageError, match="no case named 'nope'"):
        collect([str(data_dir / "tiny_suite.py") + "::nope"])
    with pytest.raises(UsageError, match="no such file"):
        collect([str(data_dir / "does_not_exist.py")])


def test_syntax_error_names_file_and_line(data_dir):
    with pytest.raises(SuiteLoadError, match=r"broken_suite.py:\d+: syntax error"):
        collect([str(data_dir / "broken_suite.py")])


def test_import_error_names_file_and_module(data_dir):
    with pytest.raises(SuiteLoadError, match=r"import_error_suite.py:2: .*no_such_module_for_difftest"):
        collect([str(data_dir / "import_error_suite.py")])


def test_a_suite_named_like_an_installed_package_is_refused(tmp_path):
    """A suite's folder goes first on sys.path: ``polars.py`` there would be what every ``import polars`` finds."""
    suite = tmp_path / "polars.py"
    suite.write_text(
        "import torch\nfrom difftest import case\n\n@case()\ndef one():\n"
        "    return torch.nn.Identity(), (torch.ones(2),)\n"
    )
    with pytest.raises(SuiteLoadError, match=r"polars.py: this suite has the name of the installed module 'polars'"):
        collect([str(suite)])
    fine = tmp_path / "polars_suite.py"
    fine.write_text(suite.read_text())
    assert [r.id for r, _ in collect([str(fine)])] == ["polars_suite::one"]
