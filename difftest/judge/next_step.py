"""The next step of a failing verdict: what the user can do about it, when difftest knows, as data (the
``next_step`` column of the comparisons table, and an outcome's), said in the console, ``print(result)``, a pytest
failure and the case page.

Each next step rests on what was recorded, never on a guess:

- the model was checked in training mode (the case row's warning, which names the modules that compute otherwise in
  training: dropout, batch norm with running statistics …): a failure on values is blamed on ``model`` (rule
  ``training_mode``) and the next step is to call ``.eval()``; eager ran batch statistics and random masks, which no
  exported inference graph computes, so the comparison says nothing about the export until then;
- every mismatching element of every failing output sits where a mask input is 0 (the ``input`` rows of the probe):
  the exact ``output_masks={...}`` to declare, if those positions are padding;
- the export failed: whether the other exporter exports the model (the worker's ``other_exporter`` control in the
  case row's ``controls``), and the one line of the exporter's message that matters (``export.messages``);
- a frozen trace after an exporter ``TracerWarning``: the warning's file and line;
- otherwise what the blame rule found: the exporter that agrees, the optimization level that agrees, the file's own
  export step, the runtime onnx-ref contradicts.
"""

from __future__ import annotations

import re
from typing import Any

from .classify import Verdict
from .vocabulary import DISCREPANCY

TRAINING = "the model is in training mode"
_MODULES = re.compile(r"modules that compute otherwise in training: (.*?)\)?: call \.eval\(\)")
TRAINING_RULE = "training_mode"
OTHER_EXPORTER = "other_exporter"  # the controls entry: does the other exporter export what this one refused?
EXPORTERS = ("dynamo", "torchscript")

Key = tuple[str, str]


def training_warning(module: Any) -> str | None:
    """The case row's warning for a model left in training mode (None in eval mode), naming the submodules whose
    training behaviour differs from inference (dropout with p > 0, batch and instance norm with running statistics,
    recurrent layers with dropout)."""
    if not getattr(module, "training", False):
        return None
    import torch

    found = []
    named = getattr(module, "named_modules", None)
    for name, sub in named() if callable(named) else []:
        if not sub.training:
            continue
        kind = type(sub).__name__
        if isinstance(sub, torch.nn.modules.dropout._DropoutNd) and sub.p > 0:
            found.append(f"{kind} {name or '(the model)'!r}")
        elif (
            isinstance(sub, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.instancenorm._InstanceNorm))
            and sub.track_running_stats
        ):
            found.append(f"{kind} {name or '(the model)'!r}")
        elif isinstance(sub, torch.nn.RNNBase) and sub.dropout > 0 and sub.num_layers > 1:
            found.append(f"{kind} {name or '(the model)'!r}")
        elif isinstance(sub, torch.nn.MultiheadAttention) and sub.dropout > 0:
            found.append(f"{kind} {name or '(the model)'!r}")
    if not found:
        return (
            f"{TRAINING}: call .eval() in the factory (none of its modules is one whose training behaviour "
            "difftest knows differs, but its own forward may read self.training)"
        )
    shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
    return f"{TRAINING} (modules that compute otherwise in training: {shown}): call .eval() in the factory"


def training_modules(case: dict[str, Any]) -> list[str] | None:
    """The modules a case's training-mode warning names (an empty list: in training mode, none known to differ);
    None when the model was in eval mode."""
    for warning in case.get("warnings") or []:
        if warning.startswith(TRAINING):
            found = _MODULES.search(warning)
            return [m.strip() for m in found.group(1).split(", ")] if found else []
    return None


def apply(verdicts: dict[str, dict[Key, Verdict]], case: dict[str, Any], reference: str) -> None:
    """Set ``next_step`` on every failing verdict where difftest knows one, and blame a value failure of a model in
    training mode on the model, in place (after ``blame.assign``: the labels are left as judged)."""
    training = training_modules(case)
    controls = case.get("controls") or {}
    for candidate, found in verdicts.items():
        masks = _padding_declaration(found)
        for key, verdict in found.items():
            if verdict.passed:
                if training is not None and verdict.label == "nondeterministic":
                    # Dropout in training mode samples in eager (and in a graph exported that way): outputs that
                    # agree in distribution say nothing element by element.
                    verdict.next_step = (
                        "call model.eval() first: the model was checked in training mode, so eager "
                        "samples and the outputs were compared only by distribution, not element "
                        "by element (a file exported in training mode gives random outputs too)"
                    )
                continue
            if training and verdict.label in DISCREPANCY:
                _blame_training(verdict, training)
                continue
            if training is not None and verdict.label in DISCREPANCY:
                verdict.next_step = (
                    "call model.eval() first: the model was checked in training mode (its own "
                    "forward may read self.training), then check again"
                )
                continue
            if masks and verdict.padding:
                verdict.next_step = (
                    f"if the positions where {' and '.join(sorted(set(masks.values())))} is 0 are "
                    f"padding, declare output_masks={masks!r}: every mismatching element is there"
                )
                continue
            verdict.next_step = _known_step(candidate, key, verdict, case, controls, reference)


def _blame_training(verdict: Verdict, modules: list[str]) -> None:
    controls = (
        f"; what the graph's own controls found: {verdict.blame_reason.rstrip('. ')}"
        if verdict.blame and verdict.blame != "model" and verdict.blame_reason
        else ""
    )
    verdict.blame, verdict.blame_rule = "model", TRAINING_RULE
    verdict.blame_reason = (
        f"the model was checked in training mode: eager ran {', '.join(modules)} as in training "
        "(batch statistics, random masks), which an exported inference graph does not compute, so "
        f"the difference says nothing about the export until the model is in eval mode{controls}"
    )
    verdict.next_step = (
        "call model.eval() before checking it (in a suite: in the factory); the model is in "
        f"training mode ({', '.join(modules)})"
    )


def _padding_declaration(found: dict[Key, Verdict]) -> dict[str, str]:
    """{output: mask input} when every failing value comparison of the candidate has all its mismatches where one
    mask is 0 (the same mask for an output on every probe); {} otherwise."""
    failing = [(key, v) for key, v in found.items() if not v.passed and v.label in ("mismatch", "nonfinite")]
    if not failing or any(not v.padding for _, v in failing):
        return {}
    declared: dict[str, str] = {}
    for (_, output), verdict in failing:
        options = verdict.padding or []
        if output in declared:
            if declared[output] not in options:
                return {}
            continue
        declared[output] = options[0]
    return declared


def _known_step(
    candidate: str, key: Key, verdict: Verdict, case: dict[str, Any], controls: dict[str, Any], reference: str
) -> str | None:
    label, rule, blame = verdict.label, verdict.blame_rule, verdict.blame or ""
    if label == "export_error" and blame == "exporter":
        return _export_step(candidate, case, controls)
    if label == "frozen_input":
        traced = [w for w in case.get("export_warnings") or [] if w.startswith("TracerWarning")]
        if traced:
            return (
                f"the exporter traced a data-dependent decision into a constant ({traced[0]}): make that branch "
                "a tensor operation (torch.where, torch.cond) or export with the other exporter"
            )
        return None
    if label == "shape_specialized":
        return (
            "the graph is right only for the traced sizes: keep sizes as tensors where the model computes them "
            "(x.shape used in arithmetic, torch.Size passed to interpolate), and declare the axes that vary "
            "dynamic (dynamic_axes)"
        )
    if rule == "other_exporter":
        agreeing = re.search(r"the (\S+) exporter's graph \((.*?)\) agrees", verdict.blame_reason or "")
        if agreeing:
            return (
                f"export with the {agreeing.group(1)} exporter ({agreeing.group(2)} agrees with eager), and report "
                "this graph against its own exporter"
            )
        return None
    if rule == "optimizer_control":
        return (
            "an ORT graph optimization changes the result: report it to ONNX Runtime (the case page's "
            "localization names the node); until then run with the graph optimization level that agrees"
        )
    if rule == "own_export":
        return (
            "difftest's own export of the model agrees with eager: bisect your export script and its "
            "post-processing (simplify, fp16, quantize) on this model"
        )
    if rule == "spec_reference" and blame == candidate:
        return (
            f"report it to {candidate}'s runtime: the ONNX reference implementation computes eager's result "
            "from the same graph"
        )
    if rule in ("spec_reference", "other_runtime") and blame.startswith("exporter"):
        return (
            "the graph itself computes something else: report it against the exporter (the case page's "
            "localization names the first node that diverges)"
        )
    if blame == "onnx_transform" and "agrees with eager" in (verdict.blame_reason or ""):
        return (
            "the export without the case's onnx_transform agrees with eager: the rewrite changes the result; "
            "fix the rewrite (or, if the change is intended, declare the expected verdict)"
        )
    separate = re.search(r"\(a run with (.+?) would separate them\)", verdict.blame_reason or "")
    if rule == "one_runtime" and separate:
        return f"run again with {separate.group(1)} among the candidates: it tells the runtime from the graph"
    if rule == "eager_off_oracle":
        return f"eager ({reference}) is the less accurate side: loosen the tolerance if this error is acceptable"
    return None


def _export_step(candidate: str, case: dict[str, Any], controls: dict[str, Any]) -> str | None:
    """What the other-exporter control found for this candidate's failed export."""
    from ..backends.candidates import parse

    mine = parse(candidate).get("exporter") or case.get("exporter") or "dynamo"
    other = next((e for e in EXPORTERS if e != mine), None)
    found = ((controls.get(OTHER_EXPORTER) or {}).get("results") or {}).get(mine)
    if other is None or found is None:
        return None
    if not found.get("ran"):
        return f"try exporter={other!r} (not tried here: {found.get('reason')})"
    if found.get("ok"):
        return (
            f"the {other} exporter exports it: use exporter={other!r} (@case/check option, or --exporter "
            f"{other}, or the candidate {_with_exporter(candidate, other)})"
        )
    return (
        f"neither exporter takes the model as written (the {other} exporter fails too: "
        f"{found.get('headline') or 'see the case page'}): change the code the messages name"
    )


def _with_exporter(candidate: str, exporter: str) -> str:
    from ..backends.candidates import parse, with_settings

    return with_settings(parse(candidate), exporter=exporter)
