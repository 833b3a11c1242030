"""The run stage's record of a case: its row takes exactly the ``cases`` table's columns, and one recorder turns
it into the rows the tables get."""

from types import SimpleNamespace

import pytest

from difftest.record.tables import frame, schema
from difftest.worker.case_run import CaseRow, record

TASK = SimpleNamespace(run_id="r", ref=SimpleNamespace(id="s::c", suite="s", name="c", path="s.py"))


def test_a_row_takes_the_tables_columns_and_nothing_else():
    row = CaseRow.for_task(TASK)
    row.exporter = "dynamo"
    row.update(opset=20, probes=["base"])
    assert (row.status, row.exporter, row.opset, row.message) == ("ok", "dynamo", 20, None)
    with pytest.raises(AttributeError, match="no column 'opsett'"):
        row.opsett = 20
    with pytest.raises(AttributeError, match="no column 'exporter_name'"):
        row.update(exporter_name="dynamo")
    with pytest.raises(AttributeError, match="no column 'onnx'"):
        row.onnx  # noqa: B018  (reading an undeclared column is as wrong as writing one)


def test_the_recorder_gives_the_rows_the_tables_take():
    row = CaseRow.for_task(TASK, exporter="dynamo", tolerances={"rtol": 1e-3, "atol": None})
    row.add_warnings("one")
    row.add_warnings("two")
    recorded = record(row, [])
    assert recorded["tensors"] == [] and recorded["case"]["warnings"] == ["one", "two"]
    assert set(recorded["case"]) <= set(schema("cases"))
    stored = frame("cases", [recorded["case"]])
    assert stored["case"][0] == "s::c" and stored["tolerances"][0]["rtol"] == 1e-3


def test_a_failure_is_a_row_like_any_other():
    failure = SimpleNamespace(kind="internal", stage="harness", message="boom", seconds=1.5)
    row = CaseRow.for_failure(TASK, failure, tags=["t"])
    assert (row.status, row.stage, row.message, row.seconds, row.tags) == ("error", "harness", "boom", 1.5, ["t"])
    timeout = SimpleNamespace(kind="timeout", stage="run (ort-cpu)", message="ran past 60 s", seconds=60.0)
    assert CaseRow.for_failure(TASK, timeout).status == "timeout"


def test_filling_a_row_imports_no_polars():
    """The worker fills the row inside the case's process; polars is imported by the parent, which writes the
    tables. (Importing it in the case would set an environment variable the isolation notes report on every
    case.)"""
    import subprocess
    import sys

    code = (
        "import sys; from types import SimpleNamespace as S; from difftest.worker.case_run import CaseRow, record; "
        "t = S(run_id='r', ref=S(id='s::c', suite='s', name='c', path='s.py')); "
        "row = CaseRow.for_task(t, exports={'dynamo': {'status': 'ok'}}); record(row, []); "
        "print('polars' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
