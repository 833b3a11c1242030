import polars as pl
import pytest

from difftest.backends.candidates import Candidate, parse, parse_list, split_specs, variant_findings
from difftest.cli import main
from difftest.errors import UsageError
from difftest.record.tables import row_dicts


def test_split_respects_brackets():
    assert split_specs("torch, ort-cpu[exporter=torchscript,opt=disable] ,ort-cuda") == [
        "torch",
        "ort-cpu[exporter=torchscript,opt=disable]",
        "ort-cuda",
    ]


def test_parse_canonicalises_order():
    c = parse("ort-cpu[opt=disable,exporter=torchscript]")
    assert c == Candidate("ort-cpu", (("exporter", "torchscript"), ("opt", "disable")))
    assert c.name == "ort-cpu[exporter=torchscript,opt=disable]"
    assert c.export_key("dynamo") == ("torchscript", None)
    assert parse("ort-cpu[threads=1]").export_key("dynamo") == ("dynamo", None)
    assert parse("ort-cuda[tf32=0]").get("tf32") == "0"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("ort-cpu[opt=fast]", "bad value 'fast' for 'opt'"),
        ("ort-cpu[speed=1]", "unknown setting 'speed'"),
        ("ort-cpu[opt]", "bad setting 'opt'"),
        ("ort-cpu[opt=all,opt=basic]", "given twice"),
        ("ort-cpu[threads=0]", "a whole number from 1"),
        ("torch[opt=disable]", "does not apply to 'torch'"),
        ("ort-cpu[tf32=0]", "does not apply to 'ort-cpu'"),
        ("ort-cpu[transform=nope]", "unknown transform 'nope'"),
        ("ort-cpu[]", "empty []"),
        ("ort-cpu[opt=all", "bad backend spec"),
        ("tensorrt", "unknown backend 'tensorrt'"),
    ],
)
def test_bad_specs_name_the_bad_part(spec, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(spec)


def test_duplicate_candidates_rejected():
    with pytest.raises(UsageError, match="twice"):
        parse_list("ort-cpu,ort-cpu")


def test_variant_findings_name_the_setting():
    found = variant_findings(
        {
            "ort-cpu": ("mismatch", False),
            "ort-cpu[opt=disable]": ("exact", True),
            "ort-cpu[threads=1]": ("mismatch", False),
        }
    )
    assert found == [
        "ort-cpu fails only with opt=all (ort-cpu: mismatch); with opt=disable it is exact (ort-cpu[opt=disable])"
    ]


def test_cli_rejects_bad_spec_with_exit_2(capsys, data_dir):
    assert main(["run", str(data_dir / "passing_suite.py"), "--backends", "torch,ort-cpu[opt=fast]"]) == 2
    assert "bad value 'fast' for 'opt'" in capsys.readouterr().err


def test_exports_are_shared_and_verdict_depends_on_exporter(tmp_path, data_dir):
    out = tmp_path / "variants"
    backends = "torch,ort-cpu,ort-cpu[opt=disable],ort-cpu[threads=1],ort-cpu[exporter=dynamo]"
    assert (
        main(
            [
                "run",
                str(data_dir / "variants_suite.py"),
                "--backends",
                backends,
                "--out",
                str(out),
                "--probes",
                "base",
                "--no-oracle",
            ]
        )
        == 1
    )
    (case,) = row_dicts(pl.read_parquet(out / "cases.parquet"), "cases")
    exports = case["exports"]
    assert sorted(exports) == ["dynamo", "torchscript"]  # four ORT candidates, two distinct exports
    assert len(list((out / "onnx").glob("*.onnx"))) == 2
    rows = {r["candidate"]: r for r in pl.read_parquet(out / "comparisons.parquet").to_dicts()}
    assert rows["ort-cpu"]["label"] == rows["ort-cpu[opt=disable]"]["label"] == "mismatch"
    assert rows["ort-cpu[exporter=dynamo]"]["label"] == "exact"
    assert rows["ort-cpu"]["blame"] == "exporter:torchscript"
    page = next((out / "cases").glob("*.html")).read_text()
    assert "fails only with exporter=torchscript" in page
