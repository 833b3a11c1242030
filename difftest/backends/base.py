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


class Backend:
    """A runtime that turns named numpy feeds into a list of numpy outputs.

    Subclasses set ``name`` and implement ``unavailable_reason``, ``prepare``
    and ``run``; nothing else. ``unavailable_reason`` never raises.
    """

    name: ClassVar[str]
    needs_onnx: ClassVar[bool] = True
    device: ClassVar[str] = "cpu"
    description: ClassVar[str] = ""
    settings: ClassVar[tuple[str, ...]] = ()  # candidate-spec keys this backend accepts (see ``candidates``)
    runs_the_model: ClassVar[bool] = False  # calls the case's own module (not a graph, not a copy): guarded

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
