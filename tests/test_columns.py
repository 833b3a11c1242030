"""Structured columns (``record.columns``): the nested records of a run are stored in parquet's own struct and list
types, read back as the values the worker wrote, and a run made when they were JSON text still reads the same."""

import json
import math
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from difftest.errors import RunDataError
from difftest.record import columns
from difftest.record.columns import ColumnValueError
from difftest.record.tables import frame, read_table, row_dicts, write_table

OLD_LAYOUT = Path(__file__).parent / "data" / "gpu_night" / "run"  # 12 cases of a GPU night, JSON text columns
# The whole night (279 cases), where the checkout sits beside the team's shared folder
WHOLE_NIGHT = Path(__file__).resolve().parents[2] / "shared" / "gpu" / "runs" / "h200-2026-11-26" / "default"

CASE = {
    "case": "s::c",
    "status": "ok",
    "exports": {
        "dynamo": {
            "exporter": "dynamo",
            "status": "ok",
            "seconds": 0.5,
            "opset": 20,
            "graph_inputs": ["x"],
            "cached": True,
            "unordered_outputs": {"values": 1},
        }
    },
    "expect": {"*": "export_error", "ort-*": ["exact", "numeric"]},
    "tolerances": {"rtol": 1e-3, "atol": None, "per_output": {"y": [0.1, 0.2]}, "output_masks": {"y": "finite"}},
    "controls": {
        "onnx-ref": {"kind": "backend", "ran": True, "for": "ort-cpu", "because": "why", "probes": ["base"]},
        "rewrite": {
            "kind": "fact",
            "ran": True,
            "candidate": "ort-cpu",
            "agrees": False,
            "evidence": "base/y: numeric",
        },
        "other_exporter": {
            "kind": "export",
            "results": {"dynamo": {"exporter": "torchscript", "ran": True, "ok": False, "for": ["ort-cpu"]}},
        },
    },
    "localization": {
        "ort-cpu": {
            "status": "found",
            "reason": "first divergent value",
            "culprit": {
                "name": "n0",
                "op_type": "Resize",
                "attributes": {"mode": "linear", "axes": [2, 3], "alpha": 0.5, "exclude_outside": 0},
                "inputs": [{"name": "x", "shape": [1, "batch", None]}],
                "outputs": [{"name": "y", "shape": None}],
                "relative_error": math.inf,
            },
            "suspects": [],
            "compared": 3,
        }
    },
}


def _contains(stored, wanted, path="") -> None:
    """Every value ``wanted`` holds is in ``stored`` at the same place (``stored`` also has the fields its type
    declares and ``wanted`` left out, as None)."""
    if isinstance(wanted, dict):
        assert isinstance(stored, dict), path
        for key, value in wanted.items():
            assert key in stored, f"{path}.{key} is missing"
            _contains(stored[key], value, f"{path}.{key}")
    elif isinstance(wanted, float) and math.isnan(wanted):
        assert math.isnan(stored), path
    else:
        assert stored == wanted, f"{path}: {stored!r} != {wanted!r}"


def test_a_case_row_round_trips_through_parquet(tmp_path):
    write_table(tmp_path, "cases", [CASE])
    assert isinstance(pl.read_parquet_schema(tmp_path / "cases.parquet")["exports"], pl.List)
    (row,) = row_dicts(read_table(tmp_path, "cases"), "cases")
    for name in ("exports", "tolerances", "controls", "localization"):
        _contains(row[name], CASE[name], name)
    assert row["expect"] == {"*": ["export_error"], "ort-*": ["exact", "numeric"]}  # one label reads as a list of one
    assert row["exports"]["dynamo"]["digest"] is None  # a declared field the worker left out
    inputs = row["localization"]["ort-cpu"]["culprit"]["inputs"]
    assert inputs[0]["shape"] == [1, "batch", None]  # sizes, symbolic names and unknown dimensions stay apart


def test_a_label_for_the_whole_case_stays_one():
    for expect in ("tie_break", ["tie_break", "numeric"]):
        stored = columns.encode("cases", "expect", expect)
        assert columns.decode("cases", "expect", stored) == ([expect] if isinstance(expect, str) else expect)
    # the "*" key and a label for the whole case are different declarations (the judge words their scope apart)
    assert columns.decode("cases", "expect", columns.encode("cases", "expect", {"*": "layout"})) == {"*": ["layout"]}


def test_an_undeclared_field_stops_the_writer():
    row = {**CASE, "controls": {"onnx-ref": {"kind": "backend", "ran": True, "verdict": "exact"}}}
    with pytest.raises(ColumnValueError, match=r"cases\.controls: onnx-ref: field 'verdict' is not declared"):
        frame("cases", [row])
    with pytest.raises(ColumnValueError, match="is not a int"):
        frame("cases", [{**CASE, "exports": {"dynamo": {"opset": "20"}}}])


@settings(max_examples=30, deadline=None)
@given(
    names=st.lists(st.text(min_size=0, max_size=12), min_size=0, max_size=5, unique=True),
    seconds=st.floats(allow_nan=False),
)
def test_any_export_names_round_trip(names, seconds):
    exports = {name: {"exporter": "dynamo", "seconds": seconds, "warnings": [name]} for name in names}
    stored = frame("cases", [{"case": "s::c", "status": "ok", "exports": exports}])
    (row,) = row_dicts(stored, "cases")
    assert list((row["exports"] or {})) == names
    _contains(row["exports"] or {}, exports)


@pytest.mark.parametrize("night", [OLD_LAYOUT, WHOLE_NIGHT], ids=["subset", "whole"])
def test_the_old_layout_reads_as_the_values_it_held(night):
    """The stored GPU night holds JSON text in these columns: read through ``read_table`` every value it held is
    there, in the declared types."""
    if not night.exists():
        pytest.skip(f"{night} is not on this machine (the team's shared folder beside the checkout)")
    raw = pl.read_parquet(night / "cases.parquet")
    assert raw.schema["exports"] == pl.String  # the old layout
    rows = {r["case"]: r for r in row_dicts(read_table(night, "cases"), "cases")}
    checked = 0
    for old in raw.to_dicts():
        for name in ("exports", "tolerances", "controls", "localization", "expect"):
            if old.get(name) is None:
                continue
            value = json.loads(old[name])
            if name == "expect":
                value = (
                    {k: [v] if isinstance(v, str) else v for k, v in value.items()}
                    if isinstance(value, dict)
                    else ([value] if isinstance(value, str) else value)
                )
            _contains(rows[old["case"]][name], value, f"{old['case']}.{name}")
            checked += 1
    assert checked >= 2 * raw.height  # every case's exports and tolerances, and what else it recorded
    (run,) = row_dicts(read_table(night, "runs"), "runs")
    (old_run,) = pl.read_parquet(night / "runs.parquet").to_dicts()
    for name in ("versions", "backends_skipped", "phase_seconds", "environment"):
        if old_run.get(name) is not None:  # (environment: recorded since 2026-11-28)
            _contains(run[name], json.loads(old_run[name]), name)


def test_old_tensor_messages_split_into_their_meanings():
    """An ``ok`` row's message held JSON (a pseudo-backend's description, or the full comparison of a sampled
    output); an error row's message is why it failed. They read as ``about``, ``full`` and ``message``."""
    raw = pl.read_parquet(OLD_LAYOUT / "tensors.parquet", columns=["backend", "status", "message"])
    tensors = read_table(OLD_LAYOUT, "tensors", without_data=True)
    ok_json = raw.filter((pl.col("status") == "ok") & pl.col("message").str.starts_with("{")).height
    assert ok_json > 0
    assert tensors.filter(pl.col("about").is_not_null()).height == ok_json
    assert tensors.filter((pl.col("status") == "ok") & pl.col("message").is_not_null()).height == 0
    errors = raw.filter(pl.col("status") == "error")["message"].to_list()
    assert tensors.filter(pl.col("status") == "error")["message"].to_list() == errors


def test_the_old_layout_rejudges(tmp_path):
    import shutil

    from difftest.cli import main

    run = tmp_path / "night"
    shutil.copytree(OLD_LAYOUT, run)
    assert main(["report", str(run), "--rejudge"]) == 1  # the night's unexpected failures, judged again
    judged = pl.read_parquet(run / "comparisons.parquet")
    assert judged.height == pl.read_parquet(OLD_LAYOUT / "comparisons.parquet").height


def test_a_struct_from_another_difftest_reads_with_the_declared_fields(tmp_path):
    """A run whose struct has a field this difftest does not declare (a newer one's) and lacks a declared one."""
    other = pl.DataFrame(
        {
            "case": ["s::c"],
            "status": ["ok"],
            "tolerances": [{"rtol": 0.5, "atol": 0.25, "newer": "x"}],
        }
    )
    other.write_parquet(tmp_path / "cases.parquet")
    (row,) = row_dicts(read_table(tmp_path, "cases"), "cases")
    assert row["tolerances"] == {"rtol": 0.5, "atol": 0.25, "per_output": None, "output_masks": None}


@pytest.mark.parametrize("text", ["{not json", '["a list"]', '{"dynamo": {"opset": "twenty"}}'])
def test_old_layout_text_that_difftest_did_not_write_is_refused(tmp_path, text):
    pl.DataFrame({"case": ["s::c"], "status": ["ok"], "exports": [text]}).write_parquet(tmp_path / "cases.parquet")
    with pytest.raises(RunDataError, match="column 'exports' does not hold what difftest wrote"):
        read_table(tmp_path, "cases")


def test_every_structured_column_is_declared_as_one():
    from difftest.record.tables import _declared

    for table, declared in _declared().items():
        marked = {name for name, kind in declared.items() if kind == "structured"}
        assert marked == set(columns.STRUCTURED.get(table, {})), table
