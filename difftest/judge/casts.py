"""The values a float-to-integer Cast converts, so "undefined behaviour" is claimed only where it happens.

The ONNX specification (Cast) and C++ leave the conversion of NaN, ±Inf and values outside the target integer
type undefined; two runtimes may then legitimately differ. A Cast of in-range values is perfectly defined, so a
difference downstream of it is somebody's fault. For every float-to-integer Cast of a graph, :func:`augment`
copies the graph with the Cast's input as an extra output; evaluated on ONNX Runtime's CPU provider on the probes
where an integer output differs, its rows go under the pseudo-backend ``cast_inputs:<export>``, one per Cast,
with the target type and the graph output the Cast produces directly (if any) in the row's message.
:func:`undefined_positions` then says whether the differing positions' inputs were out of range or NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..export.exporter import FLOAT_TYPES, INTEGER_TYPES, element_types
from ..record.names import CAST_INPUTS

PSEUDO = CAST_INPUTS
# ONNX TensorProto integer types -> numpy dtype (the range a converted value must fall in)
_NUMPY = {2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64, 12: np.uint32, 13: np.uint64}


def augment(onnx_bytes: bytes, output_names: list[str]) -> tuple[bytes, dict[str, dict[str, Any]]] | None:
    """A copy of the model whose extra outputs are the inputs of its float-to-integer Casts, or None."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(onnx_bytes)
    graph_outputs = [o.name for o in model.graph.output]
    types = element_types(model)
    found: dict[str, dict[str, Any]] = {}
    for node in list(model.graph.node):
        if node.op_type != "Cast" or types.get(node.input[0]) not in FLOAT_TYPES:
            continue
        to = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "to"), None)
        if to not in INTEGER_TYPES:
            continue
        direct = None
        if node.output[0] in graph_outputs:
            position = graph_outputs.index(node.output[0])
            direct = output_names[position] if len(output_names) == len(graph_outputs) else node.output[0]
        extra = f"difftest_cast_input_{len(found)}"
        found[node.name or node.output[0]] = {"name": extra, "to": int(to), "output": direct}
        model.graph.node.append(helper.make_node("Identity", [node.input[0]], [extra]))
        model.graph.output.append(helper.make_tensor_value_info(extra, types[node.input[0]], None))
    return (model.SerializeToString(), found) if found else None


def evaluate(
    session: Any, found: dict[str, dict[str, Any]], feeds: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Cast name -> (the values it converts on these feeds, {to, output})."""
    names = [info["name"] for info in found.values()]
    inputs = {i.name: feeds[i.name] for i in session.get_inputs()}
    values = session.run(names, inputs)
    return {
        cast: (value, {"to": found[cast]["to"], "output": found[cast]["output"]}) for cast, value in zip(found, values)
    }


def out_of_range(values: np.ndarray, to: int) -> np.ndarray:
    """Where converting ``values`` to the ONNX integer type ``to`` is undefined: NaN, ±Inf, or a value whose
    truncation falls outside the type."""
    wide = np.asarray(values).astype(np.float64)
    info = np.iinfo(_NUMPY.get(to, np.int64))
    with np.errstate(invalid="ignore"):
        truncated = np.trunc(wide)
        return ~np.isfinite(wide) | (truncated < float(info.min)) | (truncated > float(info.max))


def undefined_positions(
    casts: dict[str, tuple[np.ndarray, dict[str, Any]]], output: str, differing: np.ndarray | None
) -> tuple[bool, str]:
    """(is the difference explained by an undefined conversion, the sentence saying what the Cast inputs hold).

    A Cast that produces ``output`` directly is checked at the differing positions; one further upstream (its
    values reach the output through other nodes) counts when any value it converts is out of range or NaN."""
    undefined, defined = [], []
    for name, (values, info) in casts.items():
        bad = out_of_range(values, info["to"])
        if info.get("output") == output and differing is not None and bad.shape == differing.shape:
            hit = int((bad & differing).sum())
            (undefined if hit else defined).append(
                f"{name}: {hit} of the {int(differing.sum())} differing positions convert NaN, ±Inf or "
                "out-of-range values"
                if hit
                else f"{name}: every differing position converts a finite in-range value"
            )
        elif info.get("output") is None or info.get("output") == output:
            count = int(bad.sum())
            (undefined if count else defined).append(
                f"{name}: {count} of its {bad.size} inputs are NaN, ±Inf or out of range"
                if count
                else f"{name}: all {bad.size} of its inputs are finite and in range"
            )
    return bool(undefined), "; ".join(undefined or defined)
