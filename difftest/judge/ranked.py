"""Expose what an index output ranked: the data input of the ArgMax/ArgMin/TopK node behind it.

The graph is copied with that input added as an extra graph output and run on
ONNX Runtime's CPU provider, so the classifier can tell a tie (both indices
point at equal values) from a real index error. The candidate's own session is
left untouched (extra outputs can change which fusions a runtime applies).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..export.exporter import element_types

INDEX_OPS = {"ArgMax": 0, "ArgMin": 0, "TopK": -1}  # op -> default axis


def augment(onnx_bytes: bytes, output_names: list[str]) -> tuple[bytes, dict[str, dict[str, Any]]] | None:
    """A copy of the model whose extra outputs are the ranked values of each index output, or None."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(onnx_bytes)
    graph_outputs = [o.name for o in model.graph.output]
    found: dict[str, dict[str, Any]] = {}
    for node in model.graph.node:
        if node.op_type not in INDEX_OPS:
            continue
        index_value = node.output[1] if node.op_type == "TopK" else node.output[0]
        if index_value not in graph_outputs:
            continue
        output = (
            output_names[graph_outputs.index(index_value)] if len(output_names) == len(graph_outputs) else index_value
        )
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        found[output] = {
            "source": node.input[0],
            "op": node.op_type,
            "axis": int(attrs.get("axis", INDEX_OPS[node.op_type])),
            "keepdims": bool(attrs.get("keepdims", 1)),
        }
    if not found:
        return None
    types = element_types(model)
    for output, info in list(found.items()):
        elem_type = types.get(info["source"])
        if not elem_type:
            del found[output]
            continue
        info["name"] = f"difftest_ranked_{len(model.graph.output)}"
        model.graph.node.append(helper.make_node("Identity", [info["source"]], [info["name"]]))
        model.graph.output.append(helper.make_tensor_value_info(info["name"], elem_type, None))
    return (model.SerializeToString(), found) if found else None


def evaluate(
    session: Any, found: dict[str, dict[str, Any]], feeds: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Run the augmented graph (an ORT session of what ``augment`` returned); output name -> (ranked values,
    {op, axis, keepdims})."""
    names = [info["name"] for info in found.values()]
    inputs = {i.name: feeds[i.name] for i in session.get_inputs()}
    values = session.run(names, inputs)
    return {
        output: (value, {k: found[output][k] for k in ("op", "axis", "keepdims")})
        for output, value in zip(found, values)
    }
