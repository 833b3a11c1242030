"""The run stage's records: a case's row as a record of the ``cases`` table's columns, and the case as the worker
runs it (``CaseRun``: what ran, what it produced, what was restored), with the one recorder that turns it into
table rows.

The columns are declared once, in ``record.tables``: ``CaseRow`` takes exactly those (an undeclared one is an
AttributeError where it is written, not a column that silently never reaches the table), reads a column nothing
set as None, and ``as_row`` gives the plain row the tables and the judge read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .task import Task


@lru_cache(maxsize=1)
def _columns() -> tuple[str, ...]:
    from ..record.tables import columns

    return columns("cases")


class CaseRow:
    """One row of the ``cases`` table as the worker fills it: one attribute per column."""

    def __init__(self, **values: Any):
        object.__setattr__(self, "_values", {})
        self.update(**values)

    @classmethod
    def for_task(cls, task: Task, **values: Any) -> "CaseRow":
        """The row of the case a task names, before it runs (status ok until something says otherwise)."""
        ref = task.ref
        return cls(
            **{
                "run": task.run_id,
                "case": ref.id,
                "suite": ref.suite,
                "name": ref.name,
                "path": ref.path,
                "status": "ok",
                **values,
            }
        )

    @classmethod
    def for_failure(cls, task: Task, failure: Any, **values: Any) -> "CaseRow":
        """The row of a case that produced no result (``pool.Failure``: a crash, a timeout, a harness bug)."""
        from ..judge.vocabulary import FAILURE_KINDS

        return cls.for_task(
            task,
            status=FAILURE_KINDS[failure.kind],
            stage=failure.stage,
            message=failure.message,
            seconds=failure.seconds,
            **values,
        )

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _columns():
            raise AttributeError(f"the cases table has no column {name!r} (columns are declared in record.tables)")
        self._values[name] = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in _columns():
            raise AttributeError(f"the cases table has no column {name!r} (columns are declared in record.tables)")
        return self._values.get(name)

    def update(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def add_warnings(self, *warnings: str) -> None:
        self.warnings = [*(self.warnings or []), *warnings]

    def as_row(self) -> dict[str, Any]:
        """The plain row: the columns that were set (``tables.frame`` reads the others as null)."""
        return dict(self._values)

    def __repr__(self) -> str:
        return f"CaseRow({self._values!r})"


@dataclass
class CaseRun:
    """A case as the worker runs it.

    What ran: the task, the built case, the candidates, the probes, the subject (the model and its input and output
    names) and its exports. What it produced: the case's row and the tensors rows, in the order they were made (a
    control's rows among them, named by the control). What was restored: the guard that put the model back as the
    factory made it after every stage (its summary is the row's ``state_changes``).
    """

    task: Task
    built: Any  # suite.cases.Case
    row: CaseRow
    tensors: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[Any] = field(default_factory=list)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    subject: Any = None  # backends.Subject
    exports: Any = None  # execute.CaseExports
    guard: Any = None  # state_guard.ModelGuard
    full: Any = None  # full_compare.FullComparisons

    def recorded(self) -> dict[str, Any]:
        """The recorder: the case as rows for the tables, ``{"case": row, "tensors": [rows]}``."""
        return record(self.row, self.tensors)


def record(row: CaseRow, tensors: list[dict[str, Any]]) -> dict[str, Any]:
    """A case row and its tensors rows as the worker hands them to the parent (``{"case": row, "tensors": rows}``)."""
    return {"case": row.as_row(), "tensors": tensors}
