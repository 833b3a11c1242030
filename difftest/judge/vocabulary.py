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


# Stages a failure names (the ``stage`` of a tensors row, a case row or a comparison); ``transform:<name>``
# is a candidate's named graph rewrite.
STAGES: dict[str, str] = {
    "build": "building the case from its factory",
    "definition": "the case as written cannot be judged",
    "load": "loading an ONNX test folder",
    "reference": "the reference's first forward",
    "export": "exporting to ONNX",
    "onnx_transform": "the case's own graph rewrite",
    "session": "building a backend's session",
    "run": "running a backend on a probe",
    "outputs": "the backend returned another number of outputs",
    "model": "the model cannot run as asked on this backend",
    "record": "the stored results do not match their digests",
    "judge": "judging: a result the reference recorded was not judged (results lost)",
    "harness": "difftest itself",
    "ranked": "evaluating the values an index output ranked",
    "accumulation": "evaluating the magnitudes behind an accumulated output",
    "cast_inputs": "evaluating the values a float-to-integer Cast converts",
}


def is_stage(name: str | None) -> bool:
    return name is None or name in STAGES or name.startswith("transform:") or name.startswith("run (")


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
