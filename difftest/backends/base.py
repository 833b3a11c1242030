"""The one small interface every backend implements."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np


class BackendUnavailable(Exception):
    """Raised by ``prepare`` when the backend turns out not to work here (e.g. a
    CUDA provider that silently fell back to CPU). Recorded as ``skipped``."""


@dataclass
class Subject:
    """What a backend is asked to run: the model, its flat input/output names and,
    for ONNX backends, the exported graph."""

    module: Any
    input_names: list[str]
    output_names: list[str]
    call: Any  # callable(*flat_tensors) -> list of output tensors (torch side)
    onnx_bytes: bytes | None = None
    graph_inputs: list[str] = field(default_factory=list)
    pristine: Any = None  # a backend's own copy of the model, put back before every run (torch_eager.Pristine)

    def with_graph(self, exported: Any) -> "Subject":
        """The same model with an exported graph (anything with ``onnx_bytes`` and ``graph_inputs``)."""
        return dataclasses.replace(self, onnx_bytes=exported.onnx_bytes, graph_inputs=list(exported.graph_inputs))


@dataclass(frozen=True)
class Control:
    """An automatic control a backend declares for its own failing candidates: the same candidate with one
    setting changed (``opt=disable``, ``tf32=0``, ``precision=f32``, ``backend=aot_eager``).

    ``rule`` is how blame reads the control (a key of ``judge.vocabulary.BLAME_RULES``); ``closes`` is who is blamed
    when the control agrees with eager and the candidate does not (the part the setting switches off: ``tf32``,
    ``inductor``, ``precision:{value}`` with the candidate's value put in); ``persists`` who is blamed when the
    control fails the same way as the candidate (``dynamo``), None when that says nothing by itself; ``accepted``:
    a gap that closes is reduced precision by design and counts as numeric (TF32); ``tolerances``: the reduced
    precisions whose own tolerance a gap that closes is held to (``reduced_precision`` within it); ``order``:
    ``first`` runs before
    the graph controls (precision), ``last`` after them (ORT's optimizer)."""

    setting: str
    value: str
    because: str
    rule: str
    closes: str
    persists: str | None = None
    accepted: bool = False
    order: str = "first"
    also: tuple[tuple[str, str], ...] = ()  # further settings changed with it (fastpath=0 with tf32=0)
    # Reduced precisions a gap that closes may come from, with each one's own rtol (OpenVINO: bf16 1.6e-2): a result
    # within it is ``reduced_precision`` (a warning), beyond it a discrepancy (``judge.precision``).
    tolerances: tuple[tuple[str, float], ...] = ()

    def changes(self) -> dict[str, str]:
        return {self.setting: self.value, **dict(self.also)}


class Backend:
    """A runtime that turns named numpy feeds into a list of numpy outputs.

    Subclasses set ``name`` and implement ``unavailable_reason``, ``prepare``
    and ``run``; nothing else. ``unavailable_reason`` never raises. What a backend may also declare, read by the
    candidate specs, the controls, blame, localization and the report (never by names spread through the code):
    ``setting_values`` (the legal values of its own settings), ``setting_defaults`` (what an absent setting
    means, for sentences), ``controls`` (the automatic controls of a failing candidate), ``localize_instead``
    (for a backend that runs no ONNX graph: what to do instead of localizing), and ``teardown`` (what ``prepare``
    built that must not outlive the case).
    """

    name: ClassVar[str]
    needs_onnx: ClassVar[bool] = True
    device: ClassVar[str] = "cpu"
    description: ClassVar[str] = ""
    settings: ClassVar[tuple[str, ...]] = ()  # candidate-spec keys this backend accepts (see ``candidates``)
    runs_the_model: ClassVar[bool] = False  # calls the case's own module (not a graph, not a copy): guarded
    # Legal values of settings this backend adds (``exporter``, ``transform``, ``threads`` and the ORT/CUDA ones are
    # checked by ``candidates``); a backend may narrow a shared setting too.
    setting_values: ClassVar[dict[str, tuple[str, ...]]] = {}
    setting_defaults: ClassVar[dict[str, str]] = {}  # what an absent setting means ("opt": "all")
    localize_instead: ClassVar[str] = ""  # for needs_onnx=False: what can be done instead of ONNX localization

    def __init__(self, threads: int | None = None, options: dict[str, str] | None = None):
        self.options = dict(options or {})
        self.threads = int(self.options["threads"]) if "threads" in self.options else threads

    def unavailable_reason(self) -> str | None:
        """None when usable here, else a sentence saying why not and what to install."""
        return None

    def prepare(self, subject: Subject) -> Any:
        """Build whatever ``run`` needs (a session); may raise BackendUnavailable."""
        raise NotImplementedError

    def run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once; outputs in ``subject.output_names`` order."""
        raise NotImplementedError

    def providers(self, session: Any) -> Sequence[str]:
        """What actually executed (ORT providers, torch device)."""
        return [self.device]

    def teardown(self, session: Any) -> None:
        """Release what ``prepare`` built (compiled graphs, caches, guards), after the last run of a case; it must
        not reach the next case. Never raises (the worker ignores what it raises)."""
        return None

    @classmethod
    def recorded_setting(cls, setting: str, providers: Sequence[str] | None) -> str | None:
        """The value a run actually used for ``setting``, read from the providers it recorded (``providers``), where
        the runtime chose it (OpenVINO's inference precision); None when the run did not record one."""
        return None

    @classmethod
    def controls(cls, candidate: Any, module: Any = None) -> list[Control]:
        """The automatic controls of a failing ``candidate`` (a ``candidates.Candidate`` of this backend);
        ``module`` is the case's model (a control may depend on what it contains). Only controls whose setting
        differs from the candidate's (or, where the candidate does not set it, from the backend's declared default:
        ORT-TensorRT runs fp32 unless told) are returned: a control that changes nothing proves nothing."""
        return [
            c
            for c in cls.declared_controls(module)
            if (candidate.get(c.setting) or cls.setting_defaults.get(c.setting)) != c.value
        ]

    @classmethod
    def declared_controls(cls, module: Any = None) -> list[Control]:
        """Every control this backend declares (see ``controls``)."""
        return []
