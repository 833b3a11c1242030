"""Cases: what a suite file declares, and the picklable recipe that names one.

A suite file is a Python file whose factories are decorated with :func:`case`.
The factory builds the model and its inputs *inside the worker process*; the
parent only ever holds a :class:`CaseRef` (file path + name), which is what
crosses process boundaries.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

EXPORTERS = ("dynamo", "torchscript")

# While a suite file is being imported, decorated factories are appended here (see ``collecting``).
_collecting: list["CaseDef"] | None = None


@contextlib.contextmanager
def collecting(into: list["CaseDef"] | None) -> Iterator[None]:
    """Append the cases that ``@case`` declares while the block runs to ``into`` (None: collect nothing)."""
    global _collecting
    previous, _collecting = _collecting, into
    try:
        yield
    finally:
        _collecting = previous


@dataclass
class Case:
    """Everything a factory can say about one differential test.

    A factory may return ``(module, args)``, ``(module, args, kwargs)`` or a
    ``Case``; the tuple forms take their options from the decorator.
    """

    module: Any
    args: tuple = ()
    kwargs: Mapping[str, Any] | None = None
    tags: Sequence[str] = ()
    exporter: str | None = None
    opset: int | None = None
    # {input name: {axis: "dim name"}} - axes that may change between calls.
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None
    # Default tolerances for every output, and overrides per output name.
    rtol: float | None = None
    atol: float | None = None
    tolerances: Mapping[str, tuple[float, float]] | None = None
    # {output name: mask input name}: the output's positions where the mask is 0 (padding) are compared apart
    # and reported, not judged: the case declares they do not matter.
    output_masks: Mapping[str, str] | None = None
    # Expected verdicts: one label for every candidate, or {candidate: label}.
    expect: str | Mapping[str, str] | None = None
    # Applied to the exported onnx.ModelProto before any runtime sees it.
    onnx_transform: Callable[[Any], Any] | None = None
    # Export the kwargs as constants captured by the graph (what
    # ``functools.partial(model, **kwargs)`` does) instead of as graph inputs.
    bake_kwargs: bool = False
    # Probes this case takes part in (default: all that apply but "special"), and samples of its own:
    # {probe name: {input name: tensor}}, inputs not named there taken from the base sample.
    probes: Sequence[str] | None = None
    samples: Mapping[str, Mapping[str, Any]] | None = None
    # A folder in the ONNX test format (or a light_*.onnx file): the case runs that model, and its
    # reference is the recorded outputs; ``module`` and ``args`` are unused.
    onnx_test: str | None = None
    # The user's own ONNX file (a path, its bytes or an onnx.ModelProto): the candidates run it instead of an export
    # difftest makes, judged against ``module`` (difftest's own export of ``module`` becomes a control); without a
    # ``module`` it is a bare ONNX case, runtime against runtime (see ``worker.bare_onnx``).
    onnx: Any = None
    # Names for the model's flattened outputs, in order (default: ``output``, ``output_0`` …, dict keys): the
    # tables and difftest's own exports use them.
    output_names: Sequence[str] | None = None
    description: str = ""


# Options a decorator may carry; the same names as Case's fields.
CASE_OPTIONS = tuple(f.name for f in dataclasses.fields(Case) if f.name not in ("module", "args", "kwargs"))


@dataclass
class CaseDef:
    """A decorated factory plus the options given to the decorator."""

    factory: Callable[[], Any]
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    module: str | None = None  # the module whose code declared it (a suite importing another suite keeps its own)

    def __call__(self) -> Any:
        return self.factory()

    @property
    def doc(self) -> str:
        return _clean_doc(self.options.get("description") or self.factory.__doc__ or "")

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.options.get("tags") or ())


@dataclass(frozen=True)
class CaseRef:
    """Picklable name of a case: the suite file it lives in and its name."""

    path: str
    name: str

    @property
    def suite(self) -> str:
        return Path(self.path).stem

    @property
    def id(self) -> str:
        return f"{self.suite}::{self.name}"


def case(fn: Callable | None = None, /, *, name: str | None = None, **options: Any):
    """Declare a case factory.

    Used bare (``@case``) or with options (``@case(tags=["pitfall"], exporter="torchscript")``).
    ``name`` overrides the factory's ``__name__``, which lets suites generate
    many cases from a table.
    """
    unknown = sorted(set(options) - set(CASE_OPTIONS))
    if unknown:
        raise TypeError(f"case() got unknown option(s) {', '.join(unknown)}; known options: {', '.join(CASE_OPTIONS)}")
    _check_exporter(options.get("exporter"))

    import sys

    declaring = sys._getframe(1).f_globals.get("__name__")  # the module whose code runs @case / case(...)

    def register(factory: Callable) -> CaseDef:
        definition = CaseDef(factory=factory, name=name or factory.__name__, options=dict(options), module=declaring)
        if _collecting is not None:
            _collecting.append(definition)
        return definition

    return register(fn) if fn is not None else register


class CaseSkipped(Exception):
    """Raised by :func:`skip` or :func:`importorskip` in a factory: the case cannot run here, for a reason that
    is no finding (an optional package is missing). Every candidate is recorded as skipped with the reason."""


def skip(reason: str) -> None:
    """Skip the case being built, saying why (call it in a factory)."""
    raise CaseSkipped(reason)


def importorskip(module: str, minversion: str | None = None) -> Any:
    """Import ``module`` for a factory, or skip the case saying it is missing (or older than ``minversion``)."""
    import importlib

    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        raise CaseSkipped(f"{module} is not installed ({exc}); install it to run this case") from None
    if minversion is not None:
        from importlib import metadata

        try:
            version = metadata.version(module)
        except metadata.PackageNotFoundError:
            version = getattr(imported, "__version__", "0")
        if _version_tuple(version) < _version_tuple(minversion):
            raise CaseSkipped(f"{module} {version} is older than {minversion}, which this case needs")
    return imported


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def build(definition: CaseDef) -> Case:
    """Call the factory and normalise what it returned into a :class:`Case`.

    Raises :class:`CaseDefinitionError` with a message a suite author can act on.
    """
    produced = definition.factory()
    if isinstance(produced, Case):
        built = produced
        for key, value in definition.options.items():
            if getattr(built, key) in (None, (), "", False):
                setattr(built, key, value)
    elif isinstance(produced, tuple) and len(produced) in (2, 3):
        module, args, *rest = produced
        kwargs = rest[0] if rest else None
        built = Case(module, args, kwargs, **definition.options)
    else:
        raise CaseDefinitionError(
            f"factory {definition.name!r} returned {type(produced).__name__}; "
            "return (module, args), (module, args, kwargs) or difftest.Case(...)"
        )
    if not isinstance(built.args, tuple):
        built.args = (built.args,)
    if built.kwargs is not None and not isinstance(built.kwargs, Mapping):
        raise CaseDefinitionError(
            f"factory {definition.name!r}: kwargs must be a dict, got {type(built.kwargs).__name__}"
        )
    if built.onnx_test is None and built.onnx is None and not callable(built.module):
        raise CaseDefinitionError(
            f"factory {definition.name!r}: the module {type(built.module).__name__} is not callable"
        )
    _check_exporter(built.exporter)
    if not built.description:
        built.description = definition.doc
    return built


class CaseDefinitionError(ValueError):
    """A factory produced something difftest cannot run."""


def _check_exporter(exporter: str | None) -> None:
    if exporter is not None and exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")


def _clean_doc(doc: str) -> str:
    import inspect

    return inspect.cleandoc(doc) if doc else ""
