"""Named post-export graph transforms, usable as a candidate setting (``ort-cpu[transform=NAME]``).

Each takes and returns an ``onnx.ModelProto``. ``fp16`` (onnxconverter-common) is always there;
``onnxslim`` and ``onnxsim`` appear when those packages are installed (so "did the simplifier change the answer?" is
one command);
users add their own with :func:`register` from a suite file.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

TRANSFORMS: dict[str, Callable[[Any], Any]] = {}


def register(name: str, transform: Callable[[Any], Any] | None = None):
    """Register ``transform`` under ``name`` (usable as a decorator)."""

    def add(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        TRANSFORMS[name] = fn
        return fn

    return add(transform) if transform is not None else add


@register("fp16")
def to_float16(model: Any) -> Any:
    """Float32 weights and activations to float16 (onnxconverter-common's converter), keeping float32
    graph inputs and outputs so the candidate is fed and compared like any other."""
    from onnxconverter_common import float16

    return float16.convert_float_to_float16(model, keep_io_types=True)


if importlib.util.find_spec("onnxslim") is not None:

    @register("onnxslim")
    def _onnxslim(model: Any) -> Any:
        import onnxslim

        return onnxslim.slim(model)


if importlib.util.find_spec("onnxsim") is not None:

    @register("onnxsim")
    def _onnxsim(model: Any) -> Any:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if not ok:
            raise RuntimeError("onnxsim could not validate the simplified model")
        return simplified


def steps(case_transform: Callable[[Any], Any] | None, name: str | None) -> list[tuple[str, Callable[[Any], Any]]]:
    """The rewrites an export goes through, each with the stage a failure is charged to: the case's own
    ``onnx_transform`` first, then the candidate's named transform (``transform:NAME``)."""
    found: list[tuple[str, Callable[[Any], Any]]] = []
    if case_transform is not None:
        found.append(("onnx_transform", case_transform))
    if name:
        found.append((f"transform:{name}", TRANSFORMS[name]))
    return found
