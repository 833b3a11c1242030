"""Folders in the standard ONNX test format, as cases whose reference is the recorded outputs.

    my_test/model.onnx
    my_test/test_data_set_0/input_0.pb ... output_0.pb ...

This is how the ONNX package ships its backend test data (``pytorch-converted``, ``pytorch-operator``:
models exported from PyTorch with PyTorch's outputs recorded) and how users bring their own exported
models. The ``light`` folder holds ``light_NAME.onnx`` with ``light_NAME_output_0.pb``; its input is the
ONNX runner's deterministic dummy (``arange(n) / n`` in the input's shape, unknown dims as 1).

Loading is defensive: external-data paths must stay inside the model's folder (no absolute paths, no
``..``, no symlinks out), and a missing or malformed ``.pb`` names the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The ONNX backend test runner's tolerances for model tests: recorded outputs came from another
# framework build, so assert_close's float32 defaults would flag its float noise.
RTOL, ATOL = 1e-3, 1e-7


class OnnxTestError(ValueError):
    """A test folder that cannot be loaded safely or correctly; the message names the file."""


@dataclass
class OnnxTest:
    model: bytes
    input_names: list[str]
    output_names: list[str]
    data_sets: list[tuple[dict[str, np.ndarray], list[np.ndarray]]] = field(default_factory=list)


def is_test_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model.onnx").is_file()


def find(folder: Path) -> list[tuple[str, Path]]:
    """(case name, location) for every test in ``folder``: itself, its subfolders, or light_*.onnx files."""
    if is_test_dir(folder):
        return [(folder.name, folder)]
    found = [(p.name, p) for p in sorted(folder.iterdir()) if is_test_dir(p)]
    found += [(p.stem, p) for p in sorted(folder.glob("light_*.onnx"))]
    return found


def load(location: Path) -> OnnxTest:
    """Load a test folder (or a light model file) with its data sets."""
    import onnx

    location = Path(location)
    model_path = location / "model.onnx" if location.is_dir() else location
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:
        raise OnnxTestError(f"{model_path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    check_external_data(model, model_path.parent)
    if _uses_external_data(model):
        onnx.load_external_data_for_model(model, str(model_path.parent))
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = [o.name for o in model.graph.output]
    test = OnnxTest(model.SerializeToString(), [i.name for i in inputs], outputs)
    if location.is_dir():
        sets = sorted(location.glob("test_data_set_*"), key=lambda p: _index(p.name))
        if not sets:
            raise OnnxTestError(f"{location}: no test_data_set_* folder (expected test_data_set_0/input_0.pb …)")
        for data_set in sets:
            feeds = {name: read_pb(data_set / f"input_{i}.pb") for i, name in enumerate(test.input_names)}
            expected = [read_pb(data_set / f"output_{i}.pb") for i in range(len(outputs))]
            test.data_sets.append((feeds, expected))
    else:
        feeds = {i.name: _light_input(i) for i in inputs}
        prefix = str(model_path)[: -len(".onnx")]
        expected = [read_pb(Path(f"{prefix}_output_{i}.pb")) for i in range(len(outputs))]
        test.data_sets.append((feeds, expected))
    return test


def check_external_data(model, folder: Path) -> None:
    """Refuse external-data locations that would read outside the model's folder."""
    from onnx.external_data_helper import _get_all_tensors

    root = folder.resolve()
    for tensor in _get_all_tensors(model):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        if not location or os.path.isabs(location) or ".." in Path(location).parts:
            raise OnnxTestError(
                f"{folder}: tensor {tensor.name!r} points its external data at {location!r}, outside the model's "
                "folder; refusing to read it (only relative paths inside the folder are allowed)"
            )
        target = (folder / location).resolve()
        if root not in target.parents:
            raise OnnxTestError(
                f"{folder}: tensor {tensor.name!r} external data {location!r} resolves to {target}, outside the "
                "model's folder (a symlink out?); refusing to read it"
            )
        if not target.is_file():
            raise OnnxTestError(f"{folder}: tensor {tensor.name!r} external data file {location!r} is missing")


def case_defs(folder: Path, tags: list[str] | None = None, expect=None) -> list:
    """One case definition per test in ``folder`` (registered with the suite being collected, if any).

    ``expect(location)`` may return ``(label, reason)`` for a known, understood discrepancy; the reason is
    shown with the case.
    """
    from .cases import Case, case

    definitions = []
    for name, location in find(folder):

        def factory(location: Path = location) -> Case:
            return Case(None, (), onnx_test=str(location))

        known = expect(location) if expect else None
        factory.__doc__ = f"ONNX test data: {location}" + (f"\n\nExpected {known[0]}: {known[1]}" if known else "")
        options = {"tags": list(tags or ["onnx-test", folder.name])}
        if known:
            options["expect"] = known[0]
        definitions.append(case(factory, name=name, **options))
    return definitions


def opset_of(location: Path) -> int | None:
    """The default-domain opset a test's model imports (read without loading weights)."""
    import onnx

    model_path = location / "model.onnx" if location.is_dir() else location
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:
        return None
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _uses_external_data(model) -> bool:
    from onnx.external_data_helper import _get_all_tensors

    return any(t.data_location == 1 for t in _get_all_tensors(model))


def read_pb(path: Path) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    if not path.is_file():
        raise OnnxTestError(
            f"{path}: missing (each test data set needs input_<i>.pb for every graph input and "
            "output_<i>.pb for every graph output)"
        )
    tensor = TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
        return numpy_helper.to_array(tensor)
    except Exception as exc:
        raise OnnxTestError(f"{path}: not a serialized TensorProto ({type(exc).__name__}: {exc})") from None


def _light_input(value) -> np.ndarray:
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type != 1:
        raise OnnxTestError(f"light model input {value.name!r} is not float32; no dummy input is defined for it")
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def _index(name: str) -> int:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0
