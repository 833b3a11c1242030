"""The user's own ONNX file as the export a case runs: loaded safely, bound to the model's inputs and outputs, and
described like any export; and the names a user gave to dynamic axes, put back on difftest's own exports.

A deployment pipeline exports with its own script and post-processes the graph (simplify, fp16, quantize); the
file it ships is the one worth testing. ``Case(onnx="model.onnx")`` runs that file where difftest would run its own
export. Its inputs are matched to the model's tensor inputs by name, and what is left by position; its outputs to
the model's flattened outputs the same way. Anything that does not line up (names, count, element types, ranks,
fixed sizes) is refused before a candidate runs, with both sides listed. When names differ, the graph the runtimes
get has its inputs renamed to the model's (the rename is recorded; nothing else of the file is touched) and the
tables use the file's output names.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# ONNX TensorProto element types -> numpy dtypes (the ones a graph input can have in practice).
ELEMENT_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
}


class OnnxFileError(ValueError):
    """A file that cannot be read, or that does not line up with the model it is said to be an export of."""


@dataclass
class DeclaredValue:
    """A graph input or output as the file declares it."""

    name: str
    dtype: str | None  # numpy dtype name; None when the file does not say (or uses a type difftest cannot feed)
    dims: list[int | str | None] | None  # fixed size, symbolic name, or None (unnamed unknown); None: rank unknown

    def describe(self) -> str:
        if self.dims is None:
            shape = "shape unknown"
        else:
            shape = "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"
        return f"{self.name} ({self.dtype or 'type unknown'} {shape})"


@dataclass
class Binding:
    """How the file lines up with the model: graph input -> model input, graph output -> model output."""

    inputs: dict[str, str]  # graph input name -> the model's input name
    outputs: list[str]  # the file's output names, in the model's output order
    matched_by: dict[str, str] = field(default_factory=dict)  # "inputs"/"outputs" -> "name" | "position"
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)  # model input -> {axis: dim name}
    notes: list[str] = field(default_factory=list)


def load(source: Any) -> Any:
    """The ModelProto behind a path, bytes or ModelProto; external data is read only from inside the file's folder."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(source))
        except Exception as exc:
            raise OnnxFileError(
                f"onnx=: the bytes given are not a readable ONNX model ({type(exc).__name__}: {exc})"
            ) from None
    if not isinstance(source, (str, os.PathLike)):
        raise OnnxFileError(
            f"onnx= takes a path to a .onnx file, its bytes or an onnx.ModelProto; got {type(source).__name__}"
        )
    path = Path(source)
    if not path.is_file():
        raise OnnxFileError(f"onnx={str(source)!r}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise OnnxFileError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    from ..suite.onnx_tests import OnnxTestError, check_external_data

    try:
        check_external_data(model, path.parent)
    except OnnxTestError as exc:
        raise OnnxFileError(str(exc)) from None
    from onnx.external_data_helper import _get_all_tensors

    if any(t.data_location == 1 for t in _get_all_tensors(model)):
        onnx.load_external_data_for_model(model, str(path.parent))
    return model


def digest(source: Any) -> str:
    """A digest of the file as given (what the export cache and localizations key on)."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = Path(source).read_bytes()
    return hashlib.sha256(data).hexdigest()


def declared(value: Any) -> DeclaredValue:
    tensor = value.type.tensor_type if value.type.HasField("tensor_type") else None
    if tensor is None:
        return DeclaredValue(value.name, None, None)
    dtype = ELEMENT_DTYPES.get(tensor.elem_type)
    if not tensor.HasField("shape"):
        return DeclaredValue(value.name, dtype, None)
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return DeclaredValue(value.name, dtype, dims)


def graph_inputs(model: Any) -> list[DeclaredValue]:
    """The inputs a caller feeds (initializers that are also listed as inputs are left out)."""
    initializers = {i.name for i in model.graph.initializer}
    return [declared(v) for v in model.graph.input if v.name not in initializers]


def graph_outputs(model: Any) -> list[DeclaredValue]:
    return [declared(v) for v in model.graph.output]


def bind(
    model: Any,
    input_names: list[str],
    inputs: dict[str, np.ndarray],
    output_names: list[str],
    outputs: list[np.ndarray],
) -> Binding:
    """Line the file up with the model (its tensor inputs and the reference's outputs, as arrays), or raise
    OnnxFileError listing both sides."""
    mapping, how = _bind_inputs(graph_inputs(model), input_names, inputs)
    ordered, out_how = _bind_outputs(graph_outputs(model), output_names, outputs)
    binding = Binding(inputs=mapping, outputs=ordered, matched_by={"inputs": how, "outputs": out_how})
    _describe_binding(binding, graph_inputs(model), input_names, output_names)
    return binding


def _bind_inputs(
    file_inputs: list[Any], input_names: list[str], inputs: dict[str, np.ndarray]
) -> tuple[dict[str, str], str]:
    """(the file's input name -> the model's, how they were matched); an input the file declares that the model's
    tensor cannot feed raises OnnxFileError."""
    mapping, how = _match([v.name for v in file_inputs], input_names, allow_fewer=True)
    sides = ([v.describe() for v in file_inputs], [_describe_array(n, inputs[n]) for n in input_names])
    if mapping is None:
        raise OnnxFileError(_sides("inputs", how, *sides))
    problems = [p for v in file_inputs if (p := _input_problem(v, inputs[mapping[v.name]], mapping[v.name]))]
    if problems:
        raise OnnxFileError(
            "the ONNX file's inputs do not take the model's inputs: "
            + "; ".join(problems)
            + ". "
            + _sides("inputs", "", *sides)
        )
    return mapping, how


def _bind_outputs(file_outputs: list[Any], output_names: list[str], outputs: list[np.ndarray]) -> tuple[list[str], str]:
    """(the file's output names in the model's order, how they were matched); outputs of another rank raise
    OnnxFileError."""
    out_map, out_how = _match([v.name for v in file_outputs], output_names, allow_fewer=False)
    sides = ([v.describe() for v in file_outputs], [_describe_array(n, a) for n, a in zip(output_names, outputs)])
    if out_map is None:
        raise OnnxFileError(_sides("outputs", out_how, *sides))
    by_model = {model_name: file_name for file_name, model_name in out_map.items()}
    problems = []
    for value in file_outputs:
        array = outputs[output_names.index(out_map[value.name])]
        if value.dims is not None and len(value.dims) != array.ndim:
            problems.append(
                f"output {value.name!r} has rank {len(value.dims)} in the file, the model's "
                f"{out_map[value.name]!r} rank {array.ndim}"
            )
    if problems:
        raise OnnxFileError(
            "the ONNX file's outputs are not the model's outputs: "
            + "; ".join(problems)
            + ". "
            + _sides("outputs", "", *sides)
        )
    return [by_model[name] for name in output_names], out_how


def _describe_binding(binding: Binding, file_inputs: list[Any], input_names: list[str], output_names: list[str]):
    """The dynamic axes the file declares (under the model's input names) and the notes the case page shows."""
    mapping = binding.inputs
    for value in file_inputs:
        axes = {
            axis: (dim if isinstance(dim, str) else f"{mapping[value.name]}_dim{axis}")
            for axis, dim in enumerate(value.dims or [])
            if not isinstance(dim, int)
        }
        if axes:
            binding.dynamic_axes[mapping[value.name]] = axes
    missing = [n for n in input_names if n not in mapping.values()]
    if missing:
        binding.notes.append(
            f"the file has no input for {', '.join(missing)}: it runs without them (an input the "
            "model depends on but the file ignores fails as a frozen input)"
        )
    if binding.matched_by["inputs"] == "position":
        binding.notes.append(
            "inputs matched by position (the file names them "
            + ", ".join(f"{k} for {v}" for k, v in mapping.items() if k != v)
            + ")"
        )
    if binding.matched_by["outputs"] == "position":
        binding.notes.append(
            "outputs matched by position; the tables use the file's names ("
            + ", ".join(f"{f} for {m}" for f, m in zip(binding.outputs, output_names) if f != m)
            + ")"
        )


def bound_model(model: Any, binding: Binding) -> Any:
    """The file with its inputs renamed to the model's where they differ and its outputs listed in the model's
    order (a copy; the same model when nothing needs either)."""
    renames = {graph: mine for graph, mine in binding.inputs.items() if graph != mine}
    order = [v.name for v in model.graph.output]
    if not renames and order == binding.outputs:
        return model
    import onnx

    from ..suite.graph_edit import rename_value

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if order != binding.outputs:
        outputs = {v.name: v for v in copy.graph.output}
        ordered = [outputs[name] for name in binding.outputs]
        kept = [onnx.ValueInfoProto() for _ in ordered]
        for target, value in zip(kept, ordered):
            target.CopyFrom(value)
        del copy.graph.output[:]
        copy.graph.output.extend(kept)
    for value in copy.graph.input:
        if value.name in renames:
            rename_value(copy, value.name, renames[value.name])
            _rename_in_subgraphs(copy.graph, value.name, renames[value.name])
            value.name = renames[value.name]
    return copy


def dynamic_axes_problems(binding: Binding, declared_axes: dict[str, dict[int, str]] | None) -> list[str]:
    """Axes the case declares dynamic that the file fixes: probes only vary what the file declares dynamic."""
    problems = []
    for name, axes in (declared_axes or {}).items():
        for axis in axes:
            if int(axis) not in binding.dynamic_axes.get(name, {}):
                problems.append(
                    f"the case declares axis {axis} of {name!r} dynamic, but the ONNX file fixes it; "
                    "probes keep its size (re-export with that axis dynamic to ship a file that takes "
                    "other sizes)"
                )
    return problems


def name_dynamic_axes(model: Any, dynamic_axes: dict[str, dict[int, str]] | None) -> list[str]:
    """Give the graph's symbolic dims the names the user chose (``{"x": {0: "batch"}}`` turns ``s36`` into
    ``batch`` wherever it appears), in place. The dynamo exporter names them after its own symbols. Returns notes
    for names that could not be given: two names for one symbol (the model makes those sizes equal), or one name
    the trace split into two symbols."""
    chosen: dict[str, str] = {}
    notes: list[str] = []
    inputs = {v.name: v for v in model.graph.input}
    for name, axes in (dynamic_axes or {}).items():
        value = inputs.get(name)
        if value is None or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        for axis, wanted in axes.items():
            axis = int(axis)
            if axis >= len(dims) or not dims[axis].dim_param:
                continue
            symbol = dims[axis].dim_param
            if symbol == wanted:
                continue
            if symbol in chosen and chosen[symbol] != wanted:
                notes.append(
                    f"axes named {chosen[symbol]!r} and {wanted!r} are one size to the exporter "
                    f"({symbol}); kept {chosen[symbol]!r}"
                )
                continue
            if wanted in chosen.values():
                notes.append(
                    f"the name {wanted!r} was given to axes the exporter keeps apart; {name!r} axis "
                    f"{axis} keeps {symbol!r}"
                )
                continue
            chosen[symbol] = wanted
    if not chosen:
        return notes
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    for value in values:
        if value.type.HasField("tensor_type"):
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param in chosen:
                    dim.dim_param = chosen[dim.dim_param]
    return notes


def _match(file_names: list[str], model_names: list[str], allow_fewer: bool) -> tuple[dict[str, str] | None, str]:
    """file name -> model name: by name where the names agree, the rest by position (each left-over file value at
    the index of a left-over model value). (None, why) when they do not line up."""
    if len(file_names) > len(model_names):
        return None, (f"the file has {len(file_names)} {{kind}}, the model {len(model_names)}")
    if len(set(file_names)) != len(file_names):
        return None, "the file names two {kind} alike"
    by_name = {n: n for n in file_names if n in model_names}
    left = [n for n in file_names if n not in by_name]
    if not left:
        if not allow_fewer and len(file_names) != len(model_names):
            return None, f"the file has {len(file_names)} {{kind}}, the model {len(model_names)}"
        return by_name, "name"
    if len(file_names) != len(model_names):
        return None, (
            f"{', '.join(repr(n) for n in left)} of the file match no {{kind}} of the model by name, and "
            f"the counts differ ({len(file_names)} in the file, {len(model_names)} in the model), so "
            "they cannot be matched by position either"
        )
    mapping = dict(by_name)
    for index, name in enumerate(file_names):
        if name in by_name:
            continue
        partner = model_names[index]
        if partner in by_name.values():
            return None, (
                f"the file's {{kind}} {name!r} (position {index}) matches no name of the model, and the "
                f"model's {{kind}} at that position ({partner!r}) is already matched by name"
            )
        mapping[name] = partner
    return mapping, "position"


def _sides(kind: str, why: str, file_side: list[str], model_side: list[str]) -> str:
    head = f"the ONNX file's {kind} do not line up with the model's ({why.format(kind=kind)}). " if why else ""
    return (
        f"{head}The file's {kind}: {', '.join(file_side) or '(none)'}. The model's {kind}: "
        f"{', '.join(model_side) or '(none)'}. Export with the model's names (torch.onnx.export(..., "
        f"input_names=..., output_names=...)) or pass the {'args/kwargs' if kind == 'inputs' else 'model'} "
        "that the file was exported from"
    )


def _describe_array(name: str, array: np.ndarray) -> str:
    return f"{name} ({array.dtype} [{', '.join(str(d) for d in array.shape)}])"


def _input_problem(value: DeclaredValue, array: np.ndarray, model_name: str) -> str | None:
    if value.dtype is not None and value.dtype != str(array.dtype):
        return f"{value.name!r} is {value.dtype} in the file, the model's {model_name!r} is {array.dtype}"
    if value.dims is None:
        return None
    if len(value.dims) != array.ndim:
        return f"{value.name!r} has rank {len(value.dims)} in the file, the model's {model_name!r} rank {array.ndim}"
    fixed = [
        (axis, dim, array.shape[axis])
        for axis, dim in enumerate(value.dims)
        if isinstance(dim, int) and dim != array.shape[axis]
    ]
    if fixed:
        return (
            f"{value.name!r} fixes "
            + ", ".join(f"axis {a} to {d}" for a, d, _ in fixed)
            + f" but the model's {model_name!r} is [{', '.join(str(d) for d in array.shape)}]"
        )
    return None


def _rename_in_subgraphs(graph: Any, old: str, new: str) -> None:
    """Subgraphs (If/Loop/Scan bodies) read outer values by name: rename those reads too."""
    for node in graph.node:
        for attribute in node.attribute:
            subgraphs = ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
            for sub in subgraphs:
                for inner in sub.node:
                    inner.input[:] = [new if n == old else n for n in inner.input]
                _rename_in_subgraphs(sub, old, new)
