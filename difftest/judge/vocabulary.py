"""The verdict vocabulary, in one table: every label (whether it passes, warns or fails, and its family), every
outcome status, every stage a failure can name, every kind of blame and every rule that assigns one.

The judge, the expectations, triage, JUnit and the report's templates all read these tables, so a new label, status
or blame rule is added here once, and one that is not here cannot be emitted unnoticed (``tests/test_vocabulary.py``
reads the source for every label and rule the code can emit and holds it against these tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["passes", "warns", "fails", "neutral"]
Family = Literal["agreement", "benign", "warning", "discrepancy", "could_not_run", "not_judged"]


@dataclass(frozen=True)
class Label:
    name: str
    outcome: Outcome  # passes / warns (a pass worth a look) / fails / neutral (nothing was judged)
    family: Family
    severity: int  # the worst of several comparisons is the one with the highest severity
    meaning: str

    @property
    def passes(self) -> bool:
        """Counts as agreement (warnings and neutral labels included): nothing here is a failure."""
        return self.outcome != "fails"


LABEL_TABLE: tuple[Label, ...] = (
    Label("invalid_probe", "neutral", "not_judged", -1, "the reference itself rejects a generated probe"),
    Label("exact", "passes", "agreement", 0, "bit-identical"),
    Label("numeric", "passes", "agreement", 1, "differs only by floating-point noise"),
    Label("tie_break", "passes", "benign", 2, "indices differ only where the values they rank are tied"),
    Label("skipped", "neutral", "not_judged", 3, "the backend is not available here"),
    Label("dtype", "warns", "warning", 4, "same values, different dtype"),
    Label(
        "nondeterministic",
        "warns",
        "warning",
        5,
        "within a run-to-run spread, or a draw of the same distribution by a model that samples",
    ),
    Label(
        "reduced_precision",
        "warns",
        "warning",
        6,
        "beyond float32 tolerance at the runtime's reduced default precision (OpenVINO bf16), within that "
        "precision's own tolerance, and the runtime agrees at float32",
    ),
    Label("layout", "fails", "discrepancy", 10, "the reference's values in another arrangement"),
    Label("shape", "fails", "discrepancy", 11, "shapes differ"),
    Label("nonfinite", "fails", "discrepancy", 12, "NaN or Inf in other places"),
    Label("mismatch", "fails", "discrepancy", 13, "beyond tolerance, no benign explanation"),
    Label("frozen_input", "fails", "discrepancy", 14, "the candidate ignores an input the reference depends on"),
    Label("shape_specialized", "fails", "discrepancy", 15, "correct on the traced shape only"),
    Label("runtime_error", "fails", "could_not_run", 16, "a run or session failed"),
    Label("export_error", "fails", "could_not_run", 17, "the export or the case definition failed"),
    Label("timeout", "fails", "could_not_run", 18, "the case ran out of time"),
    Label("crash", "fails", "could_not_run", 19, "the worker died, or difftest failed (results lost included)"),
)
LABELS: dict[str, Label] = {label.name: label for label in LABEL_TABLE}


def label(name: str) -> Label:
    """The table's entry; a name that is not in it is a bug in whoever emitted it, said loudly."""
    try:
        return LABELS[name]
    except KeyError:
        raise KeyError(f"unknown verdict label {name!r}: every label is declared in judge.vocabulary") from None


def in_family(*families: str) -> frozenset[str]:
    return frozenset(entry.name for entry in LABEL_TABLE if entry.family in families)


def with_outcome(*outcomes: str) -> frozenset[str]:
    return frozenset(entry.name for entry in LABEL_TABLE if entry.outcome in outcomes)


DISCREPANCY = in_family("discrepancy")
COULD_NOT_RUN = in_family("could_not_run")
WARNINGS = with_outcome("warns")
WRONG_VALUES = frozenset({"mismatch", "layout", "nonfinite", "shape"})  # the values themselves are wrong


@dataclass(frozen=True)
class Status:
    name: str
    counts_as: Literal["pass", "fail", "skip", "omitted"]  # for the run's exit code and JUnit
    title: str  # how the report's summary cards name a count of them
    order: int  # the order the report lists them in


STATUS_TABLE: tuple[Status, ...] = (
    Status("fail", "fail", "unexpected failures", 0),
    Status("xfail", "skip", "expected failures", 1),
    Status("waived", "skip", "waived", 2),
    Status("skipped", "skip", "skipped", 3),
    Status("pass", "pass", "passed", 4),
    Status("not_applicable", "omitted", "not applicable", 5),
)
STATUSES: dict[str, Status] = {status.name: status for status in STATUS_TABLE}
CARD_ORDER = ("fail", "xfail", "waived", "pass", "skipped", "not_applicable")  # the index page's summary cards


# Stages a failure names (the ``stage`` of a tensors row, a case row or a comparison), and the verdict a failure
# there gets: ``case``, a case that failed at that stage before any candidate could be compared; ``run``, one
# candidate that failed at it. Each is (label, blame, evidence); the judge fills in {message}, {reference},
# {stage}, {candidate} and {headline} (the message's one line that matters). ``transform:<name>`` is a
# candidate's named graph rewrite, ``run (<backend>)`` a backend's run as the worker names it while it runs.
@dataclass(frozen=True)
class Stage:
    name: str
    meaning: str
    case: tuple[str, str, str] | None = None
    run: tuple[str, str, str] | None = None


CASE_FAILURE_ELSEWHERE = ("crash", "difftest", "difftest failed at {stage}: {message}")
RUN_FAILURE_ELSEWHERE = ("runtime_error", "{candidate}", "{stage} failed: {message}")
_REWRITE_FAILED = ("export_error", "{stage}", "{stage} failed: {message}")

STAGE_TABLE: tuple[Stage, ...] = (
    Stage(
        "build",
        "building the case from its factory",
        case=("export_error", "case", "the case could not be built: {message}"),
    ),
    Stage(
        "definition",
        "the case as written cannot be judged",
        case=("export_error", "case", "the case, as written, cannot be judged: {message}"),
    ),
    Stage(
        "load",
        "loading an ONNX test folder or file",
        case=("export_error", "case", "the ONNX test folder could not be loaded: {message}"),
    ),
    Stage(
        "reference",
        "the reference's first forward",
        case=("runtime_error", "{reference}", "the reference ({reference}) failed: {message}"),
    ),
    Stage("export", "exporting to ONNX", run=("export_error", "exporter", "export failed: {headline}")),
    Stage("onnx_transform", "the case's own graph rewrite", run=_REWRITE_FAILED),
    Stage("transform:", "a candidate's named graph rewrite (transform:<name>)", run=_REWRITE_FAILED),
    Stage("session", "building a backend's session"),
    Stage("run", "running a backend on a probe"),
    Stage("outputs", "the backend returned another number of outputs"),
    Stage(
        "model",
        "the model cannot run as asked on this backend (it mixes devices): a finding about the model",
        run=("runtime_error", "model", "{message}"),
    ),
    Stage("record", "the stored results do not match their digests"),
    Stage("judge", "judging: a result the reference recorded was not judged (results lost)"),
    Stage("harness", "difftest itself"),
    Stage("ranked", "evaluating the values an index output ranked"),
    Stage("eager-ranked", "recording what eager's own ArgMax/TopK/Sort ranked (the evidence for ties)"),
    Stage("accumulation", "evaluating the magnitudes behind an accumulated output"),
    Stage("cast_inputs", "evaluating the values a float-to-integer Cast converts"),
)
STAGES: dict[str, str] = {stage.name: stage.meaning for stage in STAGE_TABLE}
_STAGE_ENTRIES = {stage.name: stage for stage in STAGE_TABLE}


def stage(name: str | None) -> Stage | None:
    """The table's entry for a stage as recorded (``transform:fp16`` is the ``transform:`` entry)."""
    if name is None:
        return None
    return _STAGE_ENTRIES.get("transform:" if name.startswith("transform:") else name)


def is_stage(name: str | None) -> bool:
    return name is None or stage(name) is not None or name.startswith("run (")


def case_failure(name: str | None) -> tuple[str, str, str]:
    """(label, blame, evidence) for a case that failed at stage ``name`` (difftest's own failure elsewhere)."""
    found = stage(name)
    return found.case if found is not None and found.case is not None else CASE_FAILURE_ELSEWHERE


def run_failure(name: str | None) -> tuple[str, str, str]:
    """(label, blame, evidence) for a candidate that failed at stage ``name`` (the candidate's failure elsewhere)."""
    found = stage(name)
    return found.run if found is not None and found.run is not None else RUN_FAILURE_ELSEWHERE


# What ran: the ``status`` of a case row and of a tensors row, the kinds of ``pool.Failure`` (a case that produced
# no result) and the case status each becomes, and the kinds of control a case row's ``controls`` records.
CASE_STATUSES: dict[str, str] = {
    "ok": "the case ran; its comparisons say the rest",
    "error": "the case failed before its candidates could be compared (its stage says where)",
    "skipped": "the case skipped itself (CaseSkipped) or needs what this machine lacks",
    "crash": "the case's process died (a segfault, an abort, killed for memory) or its results were lost",
    "timeout": "the case ran past its time limit and was killed",
}
CASE_FAILURE_LABELS: dict[str, str] = {"crash": "crash", "timeout": "timeout"}  # a status that is its own verdict
ROW_STATUSES: dict[str, str] = {
    "ok": "the backend produced this output",
    "error": "the backend (or the pseudo-backend's evaluation) failed; its stage and message say where and why",
    "skipped": "not run here: the backend is unavailable, or the check did not ask for it",
}
FAILURE_KINDS: dict[str, str] = {"crash": "crash", "timeout": "timeout", "internal": "error"}
CONTROL_KINDS: dict[str, str] = {
    "backend": "another backend, or the candidate with one setting changed, on the failing candidate's probes; its "
    "rows are recorded like a candidate's and judged like one, never counted as a result",
    "fact": "the failing candidate on the export without the case's onnx_transform; its rows are recorded under "
    "the pseudo-backend without_rewrite:<candidate> and the judge reads its verdict from them",
    "export": "the other exporter tried on a model the first refused (what next_step suggests)",
}


# What a localization's status means for the verdict it sits under (the raw status stays in the tables): the
# statuses ``localize.divergence`` and the worker emit, read by the report's case page and the CLI's exit code.
LOCALIZATION_STATUSES: dict[str, str] = {
    "found": "the first node whose output diverges while its inputs agree: where the discrepancy above starts",
    "no_divergence": (
        "not localized: with every intermediate value exposed, the graph's outputs agree with eager "
        "on this probe, so the discrepancy above comes from how the runtime fuses or optimizes the "
        "whole graph, not from one node's arithmetic (the opt=disable control says whether an "
        "optimization is behind it); the verdict stands"
    ),
    "not_found": (
        "not localized: no single node could be isolated as the first to diverge (or the time budget ran "
        "out); the verdict above stands, without a node to point at"
    ),
    "unsupported": "not localized: this candidate or case has no graph to search against eager; the verdict stands",
    "error": "localization itself failed (difftest's problem, not the model's); the verdict above stands",
}
# no_divergence against a runtime on the same graph (a user's file whose values eager's cannot be mapped onto)
NO_DIVERGENCE_ON_THE_GRAPH = (
    "not localized: the candidate computes what {reference} computes on the same graph, so the discrepancy above "
    "is in the graph itself (whoever made it), whose values cannot be mapped onto eager's to name the node; the "
    "verdict stands"
)
LOCALIZED = frozenset({"found", "no_divergence"})  # a localization that answered (the CLI's exit code 0)


BlameKind = Literal["reference", "runtime", "optimizer", "graph", "precision_mode", "setup", "undefined", "ambiguous"]
BLAME_KINDS: dict[str, str] = {
    "reference": "PyTorch eager itself (farther from float64 than the candidate, or it failed)",
    "runtime": "one runtime or execution provider",
    "optimizer": "ONNX Runtime's graph optimizer",
    "graph": "whoever made the graph: an exporter, a named transform, the case's own onnx_transform, the user's file",
    "precision_mode": "a reduced-precision mode by design (TF32, the attention fast path, OpenVINO's bf16 default)",
    "setup": "the case, the model or difftest: fix the suite or the machine",
    "undefined": "nobody: the ONNX specification leaves the behaviour undefined",
    "ambiguous": "one of two, the controls that would separate them did not run",
}
SETUP_BLAME = frozenset({"case", "model", "difftest"})
_GRAPH_BLAME = (
    "exporter",
    "onnx_transform",
    "transform:",
    "case:bake_kwargs",
    "onnx-file",
    "torch.export",
    "onnx-translation",
    "dynamo",
)


def blame_kind(blame: str | None, reference: str = "torch") -> str | None:
    """Which kind of party a blame names (None for no blame)."""
    if not blame:
        return None
    if blame.startswith("none"):
        return "undefined"
    if blame in SETUP_BLAME:
        return "setup"
    if " or " in blame:
        return "ambiguous"
    if blame == reference or blame == "recorded":
        return "reference"
    if blame == "ort-optimizer":
        return "optimizer"
    if blame in ("tf32", "attention fast path") or blame.startswith("precision:"):
        return "precision_mode"
    if blame.startswith(_GRAPH_BLAME):
        return "graph"
    return "runtime"


# The rules that assign a blame (the ``blame_rule`` column); a failure blamed by the stage it failed at carries its
# label as its rule (``export_error``: the exporter; ``frozen_input``: the exporter froze it).
BLAME_RULES: dict[str, str] = {
    "eager_off_oracle": "eager is much farther from the float64 oracle than the candidate",
    "eager_backend": "an eager candidate the reference and the oracle agree against",
    "optimizer_control": "the same graph with ORT's optimizations at another level agrees",
    "other_exporter": "the other exporter's graph agrees",
    "own_export": "difftest's own export of the model agrees, the user's ONNX file does not",
    "spec_reference": "onnx-ref on the same graph agrees with eager, or computes what the candidate computes",
    "other_runtime": "another runtime on the same graph agrees with eager, or with the candidate",
    "one_runtime": "one runtime alone: the runtime or the graph, not told apart",
    "undefined_cast": "an integer output through a float-to-integer Cast of NaN or out-of-range values",
    "tf32_control": "the gap closes with TF32 off",
    "fastpath_control": "the gap closes with the attention fast path off",
    "precision_control": "the gap closes at the runtime's full precision (OpenVINO precision=f32): the precision is "
    "named, and the result is held to that precision's own tolerance",
    "compile_control": "torch.compile's aot_eager backend agrees (Inductor is blamed) or fails the same way (Dynamo)",
    "capture_control": "the program torch.export captured already computes what the ONNX candidate computes",
    "invalidated_graph": "a rewrite made the graph invalid and the runtime refused it",
    "stage": "the stage that failed",
    "training_mode": "the model was checked in training mode: eager ran dropout or batch statistics",
}
BLAME_RULES.update({name: f"a {name} verdict names who it blames" for name in LABELS})
