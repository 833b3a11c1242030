"""The other exporter as a control for a failed export: when the dynamo exporter refuses a model, does TorchScript
export it, and the other way round?

Runs in the worker after the candidates, for every ONNX candidate whose export failed at the exporter itself (not
at a rewrite). The other export is made like any export of the case (cached, recorded in ``exports``); its result
goes into the case row's ``controls`` as ``other_exporter``: ``{"kind": "export", "results": {failed exporter:
{"exporter": the other, "ran", "ok", "headline", "for": [candidates]}}}``. The judge's ``next_step`` reads it
("the torchscript exporter exports it: use exporter='torchscript'"); it is evidence, never a result.
"""

from __future__ import annotations

from typing import Any

from ..backends import REGISTRY
from ..export.messages import headline
from ..judge.next_step import EXPORTERS, OTHER_EXPORTER
from .case_run import CaseRow


def try_other_exporter(row: CaseRow, candidates: list[Any], exports: Any) -> None:
    """Export with the other exporter for each exporter that failed, and record what happened."""
    results: dict[str, dict[str, Any]] = {}
    for candidate in candidates:
        if not REGISTRY[candidate.backend].needs_onnx:
            continue
        key = candidate.export_key(row.exporter)
        exporter, named = key
        exported = exports.done.get(key)
        if exporter not in EXPORTERS or exported is None or exported.ok or exported.stage != "export":
            continue
        if exporter in results:
            results[exporter]["for"].append(candidate.name)
            continue
        other = next(e for e in EXPORTERS if e != exporter)
        try:
            theirs = exports.get((other, named))
        except Exception as exc:  # the control must never turn the case into a crash
            results[exporter] = {
                "exporter": other,
                "ran": False,
                "reason": f"{type(exc).__name__}: {exc}"[:300],
                "for": [candidate.name],
            }
            continue
        results[exporter] = {
            "exporter": other,
            "ran": True,
            "ok": theirs.ok,
            "for": [candidate.name],
            "stage": None if theirs.ok else theirs.stage,
            "headline": None if theirs.ok else headline(theirs.error),
        }
    if not results:
        return
    controls = row.controls or {}
    controls[OTHER_EXPORTER] = {"kind": "export", "results": results}
    row.controls = controls
