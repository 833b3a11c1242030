"""What a case page shows beyond the tables, computed from the tables: controls and what they changed, which
candidates produced identical outputs, why a failure has no localization, how to reproduce it here."""

from __future__ import annotations

import shlex
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..judge.classify import WRONG_VALUES, severity

LOG_TAIL_BYTES = 20_000


def traced_probes(case: dict[str, Any]) -> list[str]:
    from ..suite.probes import DISTRIBUTION_PROBES

    return [p for p in case.get("probes") or [] if p in DISTRIBUTION_PROBES]


def invalid_probes(comparisons: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(probe, eager's refusal) for each generated probe the reference could not run, once per probe."""
    found: dict[str, str] = {}
    for c in comparisons:
        if c["label"] == "invalid_probe":
            found.setdefault(c["probe"], c["evidence"])
    return list(found.items())


def controls(case: dict[str, Any], comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The controls the worker ran for this case, each with its worst verdict and whether it changed anything
    (a control whose results equal its candidate's "had no effect")."""
    recorded = case.get("controls") or {}
    by_candidate: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in comparisons:
        by_candidate[c["candidate"]].append(c)
    rows = []
    for name, info in recorded.items():
        if info.get("kind") == "export":
            rows.extend(_export_controls(info))
            continue
        if info.get("kind") == "fact":
            outcome = (
                ("agrees with eager" if info.get("agrees") else "differs from eager") + f" ({info.get('evidence')})"
                if info.get("ran")
                else f"not run: {info.get('reason')}"
            )
            rows.append(
                {
                    "name": "export without the case's onnx_transform",
                    "for": info.get("candidate"),
                    "because": "did the case's own rewrite make the gap?",
                    "label": None,
                    "outcome": outcome,
                }
            )
            continue
        own = by_candidate.get(name, [])
        worst = max(own, key=lambda c: severity(c["label"])) if own else None
        outcome = (
            f"on probes {', '.join(info.get('probes') or [])}" if info.get("ran") else f"not run: {info.get('reason')}"
        )
        if info.get("ran") and _no_effect(own, by_candidate.get(info.get("for") or "", [])):
            setting = name.split("[", 1)[-1].rstrip("]") if "[" in name else name
            outcome += f"; {setting} had no effect: the same results as {info.get('for')}"
        rows.append(
            {
                "name": name,
                "for": info.get("for"),
                "because": info.get("because"),
                "label": worst["label"] if worst else None,
                "outcome": outcome,
            }
        )
    return rows


def _export_controls(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The other exporter, tried where one exporter failed (``worker.export_control``)."""
    rows = []
    for failed, found in (info.get("results") or {}).items():
        other = found.get("exporter")
        if not found.get("ran"):
            outcome = f"not run: {found.get('reason')}"
        elif found.get("ok"):
            outcome = f"the {other} exporter exports the model: the failure is the {failed} exporter's limitation"
        else:
            outcome = f"the {other} exporter fails too ({found.get('headline')}): neither exporter takes the model"
        rows.append(
            {
                "name": f"exporter={other}",
                "for": ", ".join(found.get("for") or []),
                "because": f"the {failed} export failed: does the other exporter take the model?",
                "label": None,
                "outcome": outcome,
            }
        )
    return rows


def localization_meaning(status: str | None, reference: str | None = None) -> str:
    """What a localization's status means for the verdict above it (``vocabulary.LOCALIZATION_STATUSES``)."""
    from ..judge import vocabulary

    if status == "no_divergence" and reference not in (None, "torch", "eager"):
        return vocabulary.NO_DIVERGENCE_ON_THE_GRAPH.format(reference=reference)
    return vocabulary.LOCALIZATION_STATUSES.get(status or "", f"localization status {status!r}")


def _no_effect(control: list[dict[str, Any]], candidate: list[dict[str, Any]]) -> bool:
    mine = {(c["probe"], c["output"]): (c["max_abs"], c["mismatched"]) for c in control}
    theirs = {(c["probe"], c["output"]): (c["max_abs"], c["mismatched"]) for c in candidate}
    return bool(mine) and all(theirs.get(key) == value for key, value in mine.items())


def identical_outputs(tensors: list[dict[str, Any]], names: list[str]) -> list[list[str]]:
    """Groups of candidates whose outputs were bit-identical on every probe (the same digests): one section
    serves them all ("ort-cpu = ort-cuda[tf32=0]")."""
    digests: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for t in tensors:
        if t["backend"] in names and t["status"] == "ok" and not t["rerun"] and t["output"]:
            digests[t["backend"]].append((t["probe"], t["output"], t["digest"]))
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name in names:
        if digests.get(name):
            groups[tuple(sorted(digests[name]))].append(name)
    return [members for members in groups.values() if len(members) > 1]


def not_localized(cells: list[Any], localized: dict[str, Any]) -> list[tuple[str, str]]:
    """Why a failing candidate has no localization, for every one that has none."""
    from ..backends import REGISTRY
    from ..backends.candidates import parse

    reasons = {
        "export_error": "the export failed: there is no graph to search",
        "runtime_error": "the runtime failed: there are no values to compare",
        "crash": "the worker died: there are no values to compare",
        "timeout": "the case timed out: there are no values to compare",
        "frozen_input": "a graph-level finding: the evidence names the input the graph ignores",
        "shape_specialized": "a graph-level finding: the evidence names the shapes where it breaks",
    }
    found = []
    for o in cells:
        if o is None or o.status not in ("fail", "xfail", "waived") or o.candidate in localized:
            continue
        try:
            eager = not REGISTRY[parse(o.candidate).backend].needs_onnx
        except Exception:
            eager = False
        if eager:
            found.append((o.candidate, "it runs the PyTorch model itself: there is no graph to bisect"))
            continue
        reason = reasons.get(o.label)
        if reason is None:
            reason = (
                "it fails only on the " + str(o.probe) + " probe; localization runs on base"
                if o.probe not in ("base", "*")
                else "localization was off for this run (--localize-budget 0)"
            )
        found.append((o.candidate, reason))
    return found


def split_localization(localization: dict[str, Any], outcomes: list[Any]) -> tuple[dict, dict]:
    """(for failing candidates, for information): localizations of candidates that pass go in the second."""
    failing = {o.candidate for o in outcomes if o.status in ("fail", "xfail", "waived")}
    localization = {
        k: {**v, "meaning": localization_meaning(v.get("status"), v.get("reference"))} for k, v in localization.items()
    }
    return (
        {k: v for k, v in localization.items() if k in failing},
        {k: v for k, v in localization.items() if k not in failing},
    )


def log_tail(run_dir: Path, log: str | None) -> str | None:
    from ..record.tables import run_artifact

    path = run_artifact(run_dir, log)
    if path is None:
        return None
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - LOG_TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    return ("… (earlier output cut)\n" if size > LOG_TAIL_BYTES else "") + text if text.strip() else None


def reproduce(case: dict[str, Any], run: dict[str, Any], outcomes: list[Any]) -> dict[str, Any]:
    """The commands to reproduce the case from the suite's repository, and the environment they need."""
    environment = run.get("environment") or {}
    # A case row without a path (a case a stopped shard never ran, in a merged run) is named by its suite.
    path = _relative_to_repository(case.get("path") or f"{case.get('suite') or 'suite'}.py", environment)
    name = case.get("name") or str(case.get("case") or "").partition("::")[2]
    backends = ",".join(run.get("backends_requested") or [])
    commands = [f"difftest run {shlex.quote(path + '::' + name)} --backends {shlex.quote(backends)}"]
    for o in outcomes:
        if o.status in ("fail", "xfail") and o.label in WRONG_VALUES:
            commands.append(
                f"difftest localize {shlex.quote(path + '::' + name)} --candidate "
                f"{shlex.quote(o.candidate)} --probe {o.probe if o.probe not in (None, '*') else 'base'}"
            )
            break
    versions = run.get("versions") or {}
    return {
        "commands": commands,
        "versions": versions,
        "gpu": run.get("gpu"),
        "variables": environment.get("variables") or {},
        "python": run.get("python"),
        "platform": run.get("platform"),
    }


def _relative_to_repository(path: str, environment: dict[str, Any]) -> str:
    roots = [info.get("root") for info in (environment.get("repositories") or {}).values() if info.get("root")]
    for root in sorted(roots, key=len, reverse=True):
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            continue
    return path
