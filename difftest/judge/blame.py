"""Say who deviates: one execution provider, the graph (and whoever produced it), or PyTorch eager itself.

Works per (probe, output) across every candidate and control of a case, with the float64 oracle as the
arbiter of numbers. Each blame comes as data: who (``blame``), which rule (``blame_rule``, one of
``vocabulary.BLAME_RULES``) and the sentence saying why (``blame_reason``), so it can be checked against the
recorded numbers and read by the report without parsing the evidence. The rules, in order:

1. eager is much farther from the float64 oracle than the candidate: ``torch``;
2. an eager candidate (torch-cuda) that the reference and the oracle disagree with: that backend;
3. the same graph with ORT's optimizations at another level agrees: ``ort-optimizer``;
4. the other exporter's graph agrees: ``exporter:<name>``; for a case that runs the user's own ONNX file,
   difftest's own export of the model agrees: ``onnx-file`` (the file's export step or its post-processing);
5. ``onnx-ref`` (the ONNX specification's reference implementation) ran the same graph: if it agrees with
   eager, the runtime is at fault; if it computes what the candidate computes, the graph is;
6. another ONNX runtime on the same graph agrees with eager: the candidate; agrees with the candidate: the graph;
7. with one runtime alone: ``<candidate> or <graph>``, saying which controls would separate them (never one
   that already ran).

Before these, the controls a backend declares (``Backend.declared_controls``) are read: TF32 off (accepted as
numeric), the attention fast path off, and the generic ones: a gap that closes with the control's setting blames
what the setting switches off (``precision:bf16`` for OpenVINO's default inference precision, never accepted as
noise; ``inductor`` when torch.compile's ``aot_eager`` backend agrees), a control that fails the same way blames
what it keeps (``dynamo``, the capture). For a dynamo export, ``torch-export`` (the captured program run as a module)
tells ``torch.export`` (the capture already differs) from the exporter's ONNX translation (the capture agrees with
eager, the graph does not: the blame stays ``exporter``, its reason says the translation).

"The graph" names what produced it: the exporter, a candidate's named transform (``transform:fp16``), or the
case's own ``onnx_transform`` (when the same candidate on the untransformed export agrees with eager, the
rewrite alone is blamed). Where the ONNX specification leaves the behaviour undefined (an integer output
computed through a float-to-integer Cast), nobody is blamed and the evidence says why.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..backends.candidates import USER_FILE, with_settings
from ..record.names import WITHOUT_REWRITE
from ..record.recorded import Recorded
from .classify import Verdict, classify, output_tolerance, tolerance_for
from .randomness import is_random

Key = tuple[str, str]
VALUE_LABELS = {"mismatch", "layout", "nonfinite", "shape", "nondeterministic"}
EAGER_WORSE_FACTOR = 3.0
SPEC_REFERENCE = "onnx-ref"
USER_FILE_BLAME = "onnx-file"  # the file, whoever made it: the user's export script or its post-processing


def assign(
    verdicts: dict[str, dict[Key, Verdict]],
    rec: Recorded,
    reference: str,
    oracle: str | None,
    onnx_exports: dict[str, str],
    case: dict[str, Any] | None = None,
) -> None:
    """Fill ``blame`` for failing verdicts, in place.

    ``verdicts`` maps candidate -> (probe, output) -> verdict; ``onnx_exports`` maps each ONNX candidate to the
    name of the export it ran, so candidates on the same graph can be held against each other and variant
    settings (opt, tf32, exporter) serve as controls. ``case`` is the case's row (its rewrites, exports and
    controls).
    """
    context = _Context(verdicts, rec, reference, oracle, onnx_exports, case or {})
    # Controls are read as judged, before any blame relabels one (a TF32-accepted ort-cuda must not make its own
    # opt=disable control look like the optimizer's fault).
    judged = {
        c: {k: Verdict(v.label, v.evidence, v.metrics, v.blame, rule=v.rule) for k, v in by_key.items()}
        for c, by_key in verdicts.items()
    }
    context.verdicts = judged
    for candidate, by_key in verdicts.items():
        for key, verdict in by_key.items():
            if verdict.label == "runtime_error" and verdict.blame == candidate and candidate in context.onnx_exports:
                verdict.blame = _stage_blame(candidate, verdict, context)
                continue
            if verdict.passed or verdict.blame is not None and verdict.label not in VALUE_LABELS:
                continue
            if verdict.label not in VALUE_LABELS:
                verdict.blame = verdict.blame or _stage_blame(candidate, verdict, context)
                continue
            tf32 = _tf32_control(candidate, key, judged, context)
            if tf32 is not None:
                verdict.label, verdict.blame, verdict.rule = "numeric", "tf32", "tf32"
                verdict.blame_rule, verdict.blame_reason = "tf32_control", tf32
                verdict.evidence += f" Counted as numeric (accepted: TF32): {tf32}."
                continue
            declared = _declared_control(candidate, key, judged, context)
            if declared is not None:
                verdict.blame, verdict.blame_rule, verdict.blame_reason, relabel = declared
                if relabel:  # within the reduced precision's own tolerance: a warning
                    verdict.label, verdict.rule = "reduced_precision", "reduced precision"
                    verdict.evidence = (
                        verdict.evidence.rstrip().rstrip(".") + ". Counted as reduced_precision (a "
                        f"warning, not float noise): {verdict.blame_reason}."
                    )
                continue
            fastpath = _fastpath_control(candidate, key, judged, context)
            if fastpath is not None:
                verdict.label, verdict.blame, verdict.blame_reason = fastpath
                verdict.blame_rule = "fastpath_control"
                verdict.rule = "attention fast path" if verdict.label == "numeric" else None
                if verdict.label == "numeric":
                    verdict.evidence += " Counted as numeric (accepted: the attention fast path)."
                continue
            verdict.blame, verdict.blame_rule, reason = _value_blame(candidate, key, context)
            verdict.blame_reason = (
                f"{reason}.{_untested_tf32(candidate, judged)}{_declared_not_it(candidate, key, judged)}"
            )


class _Context:
    def __init__(self, verdicts, rec, reference, oracle, onnx_exports, case):
        self.verdicts, self.rec, self.reference, self.oracle = verdicts, rec, reference, oracle
        self.onnx_exports, self.case = onnx_exports, case
        self.exports = case.get("exports") or {}
        self.tolerances = case.get("tolerances") or {}
        self.controls = case.get("controls") or {}
        self.rewrites = list(case.get("rewrites") or [])
        self._rewrite: dict[str, Any] | None = None

    def rewrite(self) -> dict[str, Any]:
        """The rewrite control as this judge reads it (once per case): its verdict from its recorded rows, or the
        verdict the worker stored for a run made before they were recorded."""
        if self._rewrite is None:
            raw = dict(self.controls.get("rewrite") or {})
            if raw.get("ran") and self.rec.has(f"{WITHOUT_REWRITE}:{raw.get('candidate')}"):
                raw["agrees"], raw["evidence"] = rewrite_control(
                    self.rec, self.reference, raw["candidate"], self.tolerances
                )
            self._rewrite = raw
        return self._rewrite


def _stage_blame(candidate: str, verdict: Verdict, context: _Context) -> str:
    """A stage failure without a blame of its own: the runtime, unless a rewrite made the graph it refused
    invalid (the ONNX checker accepted the graph before the rewrite and rejects it after)."""
    if verdict.label == "runtime_error" and candidate in context.onnx_exports:
        export = context.exports.get(context.onnx_exports[candidate], {})
        invalidated = export.get("invalidated_by")
        if invalidated:
            stage, problem = invalidated
            verdict.blame_rule = "invalidated_graph"
            verdict.blame_reason = (
                f"the graph was valid before the {stage} rewrite and the ONNX checker rejects it after: {problem[:400]}"
            )
            return stage
    return candidate


def _siblings(candidate: str, names: list[str], key: str) -> list[tuple[str, str | None]]:
    """Candidates that differ from ``candidate`` only in setting ``key``: (name, their value)."""
    from ..backends.candidates import parse

    me = parse(candidate)
    found = []
    for name in names:
        if name == candidate:
            continue
        other = parse(name)
        if other.backend == me.backend and other.without(key) == me.without(key):
            found.append((name, other.get(key)))
    return found


def _tf32_control(candidate: str, key: Key, verdicts: dict[str, dict[Key, Verdict]], context: "_Context") -> str | None:
    from ..backends.candidates import parse

    if parse(candidate).get("tf32") == "0":
        return None
    for name, value in _siblings(candidate, list(verdicts), "tf32"):
        other = verdicts[name].get(key)
        if value == "0" and other is not None and other.passed:
            return (
                f"the gap closes with TF32 off ({name}: {other.label}); TF32 is reduced precision by design"
                + _distances(context, key, {"with TF32": candidate, "without": name})
            )
    return None


def _untested_tf32(candidate: str, verdicts: dict[str, dict[Key, Verdict]]) -> str:
    """A note for a CUDA candidate whose run had no TF32-off twin (a run from before the automatic controls, or
    one whose control budget ran out): the likeliest benign cause is then neither confirmed nor ruled out."""
    from ..backends import REGISTRY
    from ..backends.candidates import parse

    me = parse(candidate)
    backend = REGISTRY.get(me.backend)
    if (
        backend is None
        or "tf32" not in getattr(backend, "settings", ())
        or me.get("tf32") == "0"
        or any(value == "0" for _, value in _siblings(candidate, list(verdicts), "tf32"))
    ):
        return ""
    control = with_settings(me, tf32="0")
    return (
        f" TF32 is not ruled out: no {control} control ran in this run ({me.backend} uses "
        "TF32 by default; a run with that candidate tells whether the gap is TF32's reduced precision)"
    )


GENERIC_CONTROL_RULES = ("precision_control", "compile_control")
CAPTURE = "torch-export"  # the program torch.export captured, run as a module (a control for dynamo exports)


def _declared(candidate: str) -> list[Any]:
    """The generic controls the candidate's backend declares (TF32, the fast path and ORT's optimizer have rules of
    their own), those whose setting differs from the candidate's."""
    from ..backends import REGISTRY
    from ..backends.candidates import parse

    me = parse(candidate)
    backend = REGISTRY.get(me.backend)
    if backend is None:
        return []
    return [c for c in backend.controls(me) if c.rule in GENERIC_CONTROL_RULES]


def _setting_value(candidate: str, setting: str, key: Key, context: "_Context") -> str:
    """The value a candidate ran with: its spec's, else what the run recorded (OpenVINO's inference precision),
    else the backend's declared default."""
    from ..backends import REGISTRY
    from ..backends.candidates import parse

    me = parse(candidate)
    if me.get(setting):
        return me.get(setting)
    row = context.rec.row(candidate, *key) or {}
    found = REGISTRY[me.backend].recorded_setting(setting, row.get("providers"))
    return found or REGISTRY[me.backend].setting_defaults.get(setting, "default")


def _declared_control(
    candidate: str, key: Key, verdicts: dict[str, dict[Key, Verdict]], context: "_Context"
) -> tuple[str, str, str, bool] | None:
    """(blame, rule, reason, whether the label becomes reduced_precision) from a generic control the candidate's
    backend declares: the same candidate with one setting changed agrees with eager (what the setting switches off
    is to blame: the precision, Inductor), or fails the same way (what the control keeps is: Dynamo's capture).
    Never accepted as noise: the candidate computes what it computes at its own settings. A gap that closes at full
    precision is held to the reduced precision's own tolerance where the control declares one (``judge.precision``):
    within it the label becomes ``reduced_precision`` (a warning), beyond it the discrepancy stands and the reason
    says so."""
    from ..backends.candidates import parse

    me = parse(candidate)
    for control in _declared(candidate):
        name = with_settings(me, **control.changes())
        other = verdicts.get(name, {}).get(key)
        if other is None:
            continue
        mine = _setting_value(candidate, control.setting, key, context)
        if other.passed:
            blame = control.closes.format(value=mine)
            distances = _distances(
                context,
                key,
                {
                    f"{control.setting}={mine}": candidate,
                    f"{control.setting}={control.value}": name,
                    "eager": context.reference,
                },
            )
            reason = (
                f"the gap closes with {control.setting}={control.value} ({name}: {other.label}); {candidate} "
                f"ran with {control.setting}={mine}{distances}"
            )
            relabel = False
            if control.rule == "precision_control":
                held = _held_to_precision(candidate, key, mine, dict(control.tolerances), context)
                default = "its default here" if not me.get(control.setting) else "as set"
                if held is None:
                    reason += (
                        f"; {me.backend} is not accurate on this output at {control.setting}={mine} ({default}) "
                        f"by float32's tolerance: a deployment at that precision gets this error; with "
                        f"{control.setting}={control.value} it agrees with eager"
                    )
                else:
                    reason += (
                        f"; at {control.setting}={mine} ({default}): {held.describe(mine)}"
                        f"; with {control.setting}={control.value} it agrees with eager"
                    )
                    if held.within:
                        relabel = True
                    else:
                        reason += "; a deployment at that precision gets this error"
            else:
                reason += f": {blame} (switched off by {control.setting}={control.value}) makes the difference"
            return blame, control.rule, reason, relabel
        if control.persists and _agree(context.rec, candidate, name, *key):
            return (
                control.persists,
                control.rule,
                (
                    f"{name} ({control.setting}={control.value}) computes what {candidate} computes ({other.label}): "
                    f"the gap is already there without what {control.setting}={control.value} switches off, so "
                    f"{control.persists} makes it"
                ),
                False,
            )
    return None


def _held_to_precision(
    candidate: str, key: Key, precision: str, tolerances: dict[str, float], context: "_Context"
) -> Any:
    """The candidate's output held to ``precision``'s own tolerance against the float64 oracle (eager without one):
    a ``precision.PrecisionCheck``, or None when the precision declares no tolerance or nothing can be compared."""
    from . import precision as reduced

    if precision not in tolerances:
        return None
    values = context.rec.array(candidate, *key)
    truth, truth_name = (context.rec.array(context.oracle, *key) if context.oracle else None), "the float64 oracle"
    if truth is None:
        truth, truth_name = context.rec.array(context.reference, *key), "eager"
    if values is None or truth is None:
        return None
    from .masks import declared_mask

    masked = declared_mask(context.rec, context.tolerances.get("output_masks"), *key, truth.shape)
    return reduced.check(values, truth, tolerances[precision], truth_name, keep=masked[1] if masked else None)


def _declared_not_it(candidate: str, key: Key, verdicts: dict[str, dict[Key, Verdict]]) -> str:
    """A note for a candidate whose declared control ran and failed too (not that setting), or did not run."""
    from ..backends.candidates import parse

    me = parse(candidate)
    notes = []
    for control in _declared(candidate):
        name = with_settings(me, **control.changes())
        other = verdicts.get(name, {}).get(key)
        if other is None:
            notes.append(f" {control.setting}={control.value} is not ruled out: no {name} control ran")
        elif not other.passed:
            notes.append(f" Not {control.setting}: {name} fails too ({other.label})")
    return ".".join(notes) + ("." if notes else "")


def _fastpath_control(
    candidate: str, key: Key, verdicts: dict[str, dict[Key, Verdict]], context: _Context
) -> tuple[str, str, str] | None:
    """(label, blame, reason) when the gap closes with nn.MultiheadAttention's inference fast path off (alone or
    with TF32 off too). The fast path is what inference runs, so the difference is real: the label follows
    from the numbers (numeric only if the fast path is no farther from float64 than eager on CPU, ×3)."""
    from ..backends.candidates import parse

    me = parse(candidate)
    if "fastpath" not in _settings_of(me) or me.get("fastpath") == "0":
        return None
    for changes in ({"fastpath": "0"}, {"fastpath": "0", "tf32": "0"}):
        name = with_settings(me, **changes)
        other = verdicts.get(name, {}).get(key)
        if other is None or not other.passed:
            continue
        distances = _rmse_to_oracle(context, key, (candidate, name, context.reference))
        reason = (
            f"the gap closes with the attention fast path off ({name}: {other.label}); the fast path is what "
            "inference runs"
            + _distances(context, key, {"fast path": candidate, "without": name, "eager": context.reference})
        )
        if distances and distances[0] <= EAGER_WORSE_FACTOR * distances[2]:
            return "numeric", "attention fast path", reason + "; within 3× of eager's distance: float noise"
        return "mismatch", "attention fast path", reason + "; farther from float64 than eager by more than 3×"
    return None


def _settings_of(candidate: Any) -> tuple[str, ...]:
    from ..backends import REGISTRY

    return REGISTRY[candidate.backend].settings


def _rmse_to_oracle(context: "_Context", key: Key, names: tuple[str, ...]) -> list[float] | None:
    if not context.oracle:
        return None
    truth = context.rec.array(context.oracle, *key)
    arrays = [context.rec.array(name, *key) for name in names]
    if truth is None or any(a is None or a.shape != truth.shape for a in arrays):
        return None
    return [_rmse(a, truth) for a in arrays]


def _distances(context: "_Context", key: Key, named: dict[str, str]) -> str:
    """ "; RMSE vs float64: with TF32 3.1e-04, without 2.2e-07" for the named backends that recorded the output."""
    values = _rmse_to_oracle(context, key, tuple(named.values()))
    if not values:
        return ""
    return "; RMSE vs the float64 oracle: " + ", ".join(f"{label} {value:.3g}" for label, value in zip(named, values))


def rewrite_control(rec: Recorded, reference: str, candidate: str, tolerances: dict[str, Any]) -> tuple[bool, str]:
    """The rewrite control's verdict, from its recorded rows (``without_rewrite:<candidate>``: the candidate on the
    export without the case's onnx_transform): does every output agree with the reference within the case's
    tolerance? (agrees, the first labels as evidence: "probe/output: label; ...")."""
    name = f"{WITHOUT_REWRITE}:{candidate}"
    labels = []
    for probe in rec.probes(name):
        for output in rec.outputs(name, probe):
            truth, got = rec.array(reference, probe, output), rec.array(name, probe, output)
            if truth is None or got is None:
                continue
            verdict = classify(truth, got, *output_tolerance(tolerances, output))
            labels.append((probe, output, verdict.label, verdict.passed))
    agrees = bool(labels) and all(passed for *_, passed in labels)
    return agrees, "; ".join(f"{probe}/{output}: {label}" for probe, output, label, _ in labels[:4])


def graph_author(candidate: str, context: _Context) -> tuple[str, str]:
    """Who produced the graph ``candidate`` ran: (blame name, how it is known)."""
    from ..backends.candidates import parse

    transform = parse(candidate).get("transform")
    export = context.onnx_exports.get(candidate, "")
    exporter = export.split("+")[0] if export else "exporter"
    if transform:
        return f"transform:{transform}", f"the {transform} transform rewrote the {exporter} exporter's graph"
    if exporter == USER_FILE:
        return USER_FILE_BLAME, "the ONNX file the case gave produced it"
    if "onnx_transform" in context.rewrites:
        raw = context.rewrite()
        if raw.get("ran"):
            if raw.get("agrees"):
                return "onnx_transform", (
                    f"{raw.get('candidate')} on the export without the case's onnx_transform "
                    f"agrees with eager ({raw.get('evidence', '')}): the case's rewrite changed "
                    "the graph"
                )
            return "exporter", (
                f"{raw.get('candidate')} on the export without the case's onnx_transform already "
                f"differs from eager: the {exporter} exporter's graph"
            )
        return "onnx_transform or exporter", (
            "the case's onnx_transform rewrote the exported graph; the rewrite and the exporter are not told apart"
        )
    return "exporter", f"the {exporter} exporter produced it"


def _undefined(candidate: str, key: Key, context: _Context) -> str | None:
    """Why the ONNX specification does not define this output, or None."""
    ref = context.rec.array(context.reference, *key)
    if ref is None or ref.dtype.kind not in "iub":
        return None
    # An eager candidate runs no graph: the case's own export says what the model computes.
    export = context.exports.get(context.onnx_exports.get(candidate, context.case.get("exporter") or "dynamo"), {})
    casts = export.get("float_to_int_casts") or []
    if not casts:
        return None
    # Undefined only where it happens: the values the Casts convert on this probe (see ``casts``); without them
    # (they were not evaluated) nothing shows the conversion was undefined, so nothing is excused.
    from .casts import PSEUDO, undefined_positions

    name = context.onnx_exports.get(candidate, context.case.get("exporter") or "dynamo")
    pseudo, (probe, output) = f"{PSEUDO}:{name}", key
    converted = {}
    for cast in context.rec.outputs(pseudo, probe):
        values, row = context.rec.array(pseudo, probe, cast), context.rec.row(pseudo, probe, cast)
        if values is not None and row is not None:
            converted[cast] = (values, json.loads(row.get("about") or "{}"))
    if not converted:
        return None
    cand = context.rec.array(candidate, *key)
    differing = ref != cand if cand is not None and cand.shape == ref.shape else None
    undefined, what = undefined_positions(converted, output, differing)
    if not undefined:
        return None
    return (
        f"the model casts floats to integers (Cast node {', '.join(casts[:3])} of its export) and on this probe "
        f"{what}; the ONNX specification (Cast) and C++ leave out-of-range and NaN conversions undefined, so "
        "runtimes and devices may legitimately differ there"
    )


Blamed = tuple[str, str, str]  # (who, which rule of ``vocabulary.BLAME_RULES``, why)


def _value_blame(candidate: str, key: Key, context: _Context) -> Blamed:
    """(who, which rule of ``vocabulary.BLAME_RULES``, why): the first rule that decides, in this order."""
    from ..backends.candidates import parse

    truth = _oracle_values(key, context)
    found = _eager_off_oracle(candidate, key, context, truth)
    if found is not None:
        return found
    undefined = _undefined(candidate, key, context)
    if undefined is not None:
        return "none (undefined behaviour)", "undefined_cast", undefined
    if candidate not in context.onnx_exports:
        return candidate, "eager_backend", "the reference and the oracle agree with each other, not with this backend"
    found = _optimizer_control(candidate, key, context)
    if found is not None:
        return found
    reference, me = context.reference, parse(candidate)
    if (
        context.case.get("exporter") == USER_FILE
        and context.case.get("reference") == reference != "torch"
        and not me.get("transform")
    ):
        # A bare ONNX file: the reference is a runtime on the same graph, there is no model to blame the graph on.
        return _bare_file_blame(candidate, key, context, truth)
    found = _exporter_control(candidate, key, context)
    if found is not None:
        return found
    return _graph_or_runtime(candidate, key, context)


def _oracle_values(key: Key, context: _Context) -> np.ndarray | None:
    """The float64 oracle's output, where one ran and the output is not a random draw (one draw against another:
    no distance to the oracle means much)."""
    if not context.oracle or is_random(context.rec, context.reference, *key):
        return None
    return context.rec.array(context.oracle, *key)


def _errors_to_oracle(
    candidate: str, key: Key, context: _Context, truth: np.ndarray | None
) -> tuple[float, float] | None:
    """(the reference's RMSE to the oracle, the candidate's), where all three have the same shape."""
    ref, cand = context.rec.array(context.reference, *key), context.rec.array(candidate, *key)
    if truth is None or ref is None or cand is None or not ref.shape == cand.shape == truth.shape:
        return None
    return _rmse(ref, truth), _rmse(cand, truth)


def _eager_off_oracle(candidate: str, key: Key, context: _Context, truth: np.ndarray | None) -> Blamed | None:
    errors = _errors_to_oracle(candidate, key, context, truth)
    if errors is None:
        return None
    ref_err, cand_err = errors
    if ref_err > EAGER_WORSE_FACTOR * cand_err and ref_err > 0 and np.isfinite(cand_err):
        reference = context.reference
        who = "eager" if reference == "torch" else f"the reference ({reference})"
        return (
            reference,
            "eager_off_oracle",
            (f"{who} is farther from the float64 oracle (RMSE {ref_err:.3g}) than {candidate} ({cand_err:.3g})"),
        )
    return None


def _optimizer_control(candidate: str, key: Key, context: _Context) -> Blamed | None:
    from ..backends.candidates import parse

    me = parse(candidate)
    for name, value in _siblings(candidate, list(context.verdicts), "opt"):
        other = context.verdicts[name].get(key)
        if other is not None and other.passed and value != me.get("opt"):
            return (
                "ort-optimizer",
                "optimizer_control",
                (
                    f"the same graph with graph optimizations at {value or 'all'} ({name}) agrees with eager: an ORT "
                    "graph "
                    "optimization changes the result"
                ),
            )
    return None


def _bare_file_blame(candidate: str, key: Key, context: _Context, truth: np.ndarray | None) -> Blamed:
    reference = context.reference
    if reference == SPEC_REFERENCE:
        return (
            candidate,
            "spec_reference",
            (
                f"{reference}, the ONNX specification's reference implementation and "
                "this case's reference, computes something else on the same graph"
            ),
        )
    errors = _errors_to_oracle(candidate, key, context, truth)
    if errors is not None:
        ref_err, cand_err = errors
        if cand_err > EAGER_WORSE_FACTOR * ref_err:
            return (
                candidate,
                "other_runtime",
                (
                    f"{candidate} is farther from the float64 oracle (RMSE "
                    f"{cand_err:.3g}) than the reference {reference} ({ref_err:.3g})"
                ),
            )
    return (
        f"{candidate} or {reference}",
        "one_runtime",
        (
            "two runtimes on the same graph disagree and the float64 oracle does not single one out; add onnx-ref "
            "to --backends for the specification's opinion"
        ),
    )


def _exporter_control(candidate: str, key: Key, context: _Context) -> Blamed | None:
    for name, value in _siblings(candidate, list(context.verdicts), "exporter"):
        other = context.verdicts[name].get(key)
        if other is not None and other.passed:
            mine = context.onnx_exports[candidate].split("+")[0]
            if mine == USER_FILE:
                return (
                    USER_FILE_BLAME,
                    "own_export",
                    (
                        f"difftest's own {value} export of the same model ({name}) agrees with eager: the ONNX file "
                        "(the export step that made it or the post-processing after) makes the difference"
                    ),
                )
            return (
                f"exporter:{mine}",
                "other_exporter",
                (f"the {value or 'default'} exporter's graph ({name}) agrees with eager"),
            )
    return None


def _graph_or_runtime(candidate: str, key: Key, context: _Context) -> Blamed:
    """The graph's author or the runtime, told apart by the capture, onnx-ref and other runtimes on the same graph."""
    capture = _capture_opinion(candidate, key, context)
    if capture is not None and capture[0] == "candidate":
        return "torch.export", "capture_control", capture[1]
    author, how = graph_author(candidate, context)
    if capture is not None and capture[0] == "eager" and author == "exporter":
        how = (
            f"{how}; {capture[1]}, so not the capture: the exporter's ONNX translation of the captured program "
            "makes the difference"
        )
    spec = _spec_opinion(candidate, key, context)
    if spec is not None and spec[0] == "eager":
        return candidate, "spec_reference", f"{spec[1]}: the runtime, not the graph, computes something else"
    if spec is not None and spec[0] == "candidate":
        return author, "spec_reference", f"{spec[1]}: the graph itself differs from eager ({how})"
    return _other_runtimes(candidate, key, context, author, how, spec)


def _other_runtimes(
    candidate: str, key: Key, context: _Context, author: str, how: str, spec: tuple[str, str] | None
) -> Blamed:
    from ..backends.candidates import parse

    rec, verdicts, me = context.rec, context.verdicts, parse(candidate)
    same_graph = [
        c
        for c in context.onnx_exports
        if c != candidate and context.onnx_exports[c] == context.onnx_exports[candidate] and key in verdicts.get(c, {})
    ]
    other_runtimes = [c for c in same_graph if parse(c).backend != me.backend and parse(c).backend != SPEC_REFERENCE]
    passing = [c for c in other_runtimes if verdicts[c][key].passed]
    agreeing = [c for c in other_runtimes if not verdicts[c][key].passed and _agree(rec, candidate, c, *key)]
    if passing:
        return candidate, "other_runtime", f"{', '.join(passing)} ran the same ONNX graph and agrees with eager"
    if agreeing:
        return (
            author,
            "other_runtime",
            (
                f"{candidate} and {', '.join(agreeing)} agree with each other on the same "
                f"ONNX graph but not with eager ({how})"
            ),
        )
    if other_runtimes:
        return candidate, "other_runtime", "the ONNX runtimes disagree with each other as well as with eager"
    same_runtime = [
        c
        for c in same_graph
        if parse(c).backend == me.backend and not verdicts[c][key].passed and _agree(rec, candidate, c, *key)
    ]
    present = ", ".join(same_runtime)
    suggestions = [
        s
        for s in ("onnx-ref", "ort-cuda" if me.backend == "ort-cpu" else "ort-cpu")
        if not any(parse(n).backend == s for n in verdicts)
    ]
    why = "only one ONNX runtime ran this graph, so the graph and the runtime cannot be told apart"
    if present:
        why = (
            f"{candidate} gives the same result with other runtime settings ({present}), so no single "
            "optimization explains it; " + why
        )
    if spec is not None:
        why += f" ({spec[1]})"
    if suggestions:
        why += f" (a run with {' or '.join(suggestions)} would separate them)"
    return f"{candidate} or {author}", "one_runtime", why


def _capture_opinion(candidate: str, key: Key, context: _Context) -> tuple[str, str] | None:
    """What the program torch.export captured says, for a candidate on a dynamo export: ("candidate", why) when it
    computes what the candidate computes (the capture makes the gap), ("eager", why) when it agrees with eager;
    None when it did not run, disagrees with both, or the graph is not a plain dynamo export."""
    theirs = context.verdicts.get(CAPTURE, {}).get(key)
    if theirs is None or context.onnx_exports.get(candidate) != "dynamo":
        return None
    if theirs.passed:
        return (
            "eager",
            f"{CAPTURE} (the program torch.export captured, run as a module) agrees with eager ({theirs.label})",
        )
    if _agree(context.rec, candidate, CAPTURE, *key):
        return "candidate", (
            f"{CAPTURE} (the program torch.export captured, run as a module, before any ONNX "
            f"translation) computes what {candidate} computes ({theirs.label}): the capture differs "
            "from eager, and the ONNX graph only carries it"
        )
    return None


def _spec_opinion(candidate: str, key: Key, context: _Context) -> tuple[str, str] | None:
    """What the ONNX reference implementation says about the graph ``candidate`` ran: ("eager" | "candidate" |
    "neither", the sentence), or None when it did not run on this graph and probe."""
    from ..backends.candidates import parse

    probe, output = key
    for name, verdicts in context.verdicts.items():
        if name == candidate or parse(name).backend != SPEC_REFERENCE:
            continue
        if context.onnx_exports.get(name) != context.onnx_exports.get(candidate):
            continue
        theirs = verdicts.get(key)
        if theirs is None:
            continue
        if theirs.passed:
            return "eager", (
                f"{name} (the ONNX specification's reference implementation, run on the same graph) "
                f"agrees with eager ({theirs.label})"
            )
        if _agree(context.rec, candidate, name, probe, output):
            return "candidate", (
                f"{name} (the ONNX specification's reference implementation, run on the same "
                f"graph) computes what {candidate} computes"
            )
        return "neither", f"{name} disagrees with both eager and {candidate}"
    return None


def _agree(rec: Recorded, a: str, b: str, probe: str, output: str) -> bool:
    x, y = rec.array(a, probe, output), rec.array(b, probe, output)
    if x is None or y is None or x.shape != y.shape:
        return False
    rtol, atol = tolerance_for(x)
    with np.errstate(all="ignore"):
        return bool(
            np.allclose(
                x.astype(np.float64), y.astype(np.float64), rtol=max(rtol, 1e-4), atol=max(atol, 1e-5), equal_nan=True
            )
        )


def _rmse(values: np.ndarray, truth: np.ndarray) -> float:
    """RMSE against the oracle where the oracle is finite. A NaN or ±Inf where the oracle is finite is the largest
    error there is (inf), never a position left out: leaving it out made the backend with the NaN look closer.
    Where the oracle itself is not finite the same non-finite value is no error, and any other is infinite."""
    v, t = values.astype(np.float64), truth.astype(np.float64)
    finite = np.isfinite(t)
    if (finite & ~np.isfinite(v)).any():
        return float("inf")
    with np.errstate(invalid="ignore"):
        same_special = ~finite & ((np.isnan(t) & np.isnan(v)) | (t == v))
    if (~finite & ~same_special).any():
        return float("inf")
    mask = finite & np.isfinite(v)
    return float(np.sqrt(np.mean((v[mask] - t[mask]) ** 2))) if mask.any() else 0.0
