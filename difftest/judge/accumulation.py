"""The magnitudes behind an accumulated output, so float error can be held against the summation bound.

A float sum of n terms computed in any order is within γₙ·Σ|xᵢ| of the exact sum (γₙ = n·u / (1 − n·u), u the
unit roundoff: Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2). Two correct runtimes that
sum in different orders (sequential against blocked, a GPU tree) can therefore differ by far more than a
fixed tolerance on long reductions, and neither is wrong. To apply the bound the judge needs Σ|xᵢ| for every
output element and n.

For each graph output produced by an accumulating node (ReduceSum, ReduceMean, CumSum, MatMul, Gemm, Conv),
possibly followed by Identity, a float Cast or the Add of a constant bias, the graph is copied with a
*magnitude* branch added: the same node (same attributes) applied to the absolute values of its data inputs,
then the bias's absolute value added. Its output is Σ|xᵢ| per output element (the mean of |xᵢ| for
ReduceMean); the Shape of each data input gives n. Evaluated on ONNX Runtime's CPU provider on every probe
and recorded under the pseudo-backend ``accumulation:<export>``, with the node and n in the row's message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..export.exporter import element_types
from ..record.names import ACCUMULATION

ACCUMULATING = {
    "ReduceSum": (0,),
    "ReduceMean": (0,),
    "CumSum": (0,),
    "MatMul": (0, 1),
    "Gemm": (0, 1, 2),
    "Conv": (0, 1, 2),
}
PASS_THROUGH = {"Identity", "Cast"}  # value-preserving (a float Cast only)
RESHAPING = {"Squeeze", "Unsqueeze", "Reshape", "Flatten", "Transpose"}  # move values, replayed on the magnitude
FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
PSEUDO = ACCUMULATION


def augment(onnx_bytes: bytes, output_names: list[str]) -> tuple[bytes, dict[str, dict[str, Any]]] | None:
    """A copy of the model with a magnitude branch per accumulated output, or None when no output is one."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    constants = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            constants[node.output[0]] = node
    graph_outputs = [o.name for o in graph.output]
    types = element_types(model)
    found: dict[str, dict[str, Any]] = {}
    added: list[Any] = []
    new_outputs: list[Any] = []
    for position, value in enumerate(graph_outputs):
        output = output_names[position] if len(output_names) == len(graph_outputs) else value
        path, node = _trace_back(value, producers, constants)
        if node is None:
            continue
        prefix = f"difftest_acc{position}"
        data_slots = [i for i in ACCUMULATING[node.op_type] if i < len(node.input) and node.input[i]]
        inputs = list(node.input)
        for slot in data_slots:
            abs_name = f"{prefix}_abs{slot}"
            added.append(helper.make_node("Abs", [node.input[slot]], [abs_name]))
            inputs[slot] = abs_name
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm":
            attributes["alpha"] = abs(attributes.get("alpha", 1.0))
            attributes["beta"] = abs(attributes.get("beta", 1.0))
        magnitude = f"{prefix}_magnitude"
        current = f"{prefix}_sum"
        added.append(helper.make_node(node.op_type, inputs, [current], domain=node.domain or None, **attributes))
        biases = 0
        for step, (kind, item) in enumerate(path):
            if kind == "bias":
                abs_bias, summed = f"{prefix}_bias_abs{step}", f"{prefix}_bias{step}"
                added.append(helper.make_node("Abs", [item], [abs_bias]))
                added.append(helper.make_node("Add", [current, abs_bias], [summed]))
                current, biases = summed, biases + 1
            else:  # a reshaping node: the same on the magnitudes, so they line up with the output
                moved = f"{prefix}_moved{step}"
                copy = helper.make_node(item.op_type, [current, *item.input[1:]], [moved], domain=item.domain or None)
                copy.attribute.extend(item.attribute)
                added.append(copy)
                current = moved
        added.append(helper.make_node("Identity", [current], [magnitude]))
        shapes = []
        for slot in data_slots:
            shape_name = f"{prefix}_shape{slot}"
            added.append(helper.make_node("Shape", [node.input[slot]], [shape_name]))
            new_outputs.append(helper.make_tensor_value_info(shape_name, onnx.TensorProto.INT64, None))
            shapes.append(shape_name)
        new_outputs.append(
            helper.make_tensor_value_info(magnitude, types.get(node.output[0], onnx.TensorProto.FLOAT), None)
        )
        info: dict[str, Any] = {
            "op": node.op_type,
            "node": node.name or node.output[0],
            "magnitude": magnitude,
            "shapes": shapes,
            "slots": data_slots,
            "biases": biases,
            "attributes": {k: v for k, v in attributes.items() if isinstance(v, (int, float))},
        }
        if node.op_type in ("ReduceSum", "ReduceMean", "CumSum"):
            info["axes"] = _axes(node, attributes, constants)
            if info["axes"] is None:
                continue  # axes computed at run time: n cannot be known here
        found[output] = info
    if not found:
        return None
    graph.node.extend(added)
    graph.output.extend(new_outputs)
    return model.SerializeToString(), found


def _trace_back(value: str, producers: dict[str, Any], constants: dict[str, Any]) -> tuple[list[tuple[str, Any]], Any]:
    """From a graph output back through value-preserving nodes, reshaping nodes and constant bias adds to an
    accumulating node: (the steps to replay on the magnitude, innermost first: ("bias", value) or ("node",
    node); the accumulating node), or ([], None)."""
    steps: list[tuple[str, Any]] = []
    node = producers.get(value)
    for _ in range(12):
        if node is None:
            return [], None
        if node.op_type in ACCUMULATING:
            return list(reversed(steps)), node
        if node.op_type in PASS_THROUGH:
            if node.op_type == "Cast" and not _to_float(node):
                return [], None
            node = producers.get(node.input[0])
            continue
        if node.op_type in RESHAPING:
            steps.append(("node", node))
            node = producers.get(node.input[0])
            continue
        if node.op_type == "Add" and len(node.input) == 2:
            constant = [i for i in node.input if i in constants]
            other = [i for i in node.input if i not in constants]
            if len(constant) == 1 and len(other) == 1:
                steps.append(("bias", constant[0]))
                node = producers.get(other[0])
                continue
        return [], None
    return [], None


def _to_float(node: Any) -> bool:
    from onnx import helper

    to = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "to"), None)
    return to in FLOAT_TYPES


def _axes(node: Any, attributes: dict[str, Any], constants: dict[str, Any]) -> list[int] | None:
    """The reduced (or scanned) axes, from the attribute or a constant second input; [] means all axes."""
    from onnx import numpy_helper

    if "axes" in attributes:
        return [int(a) for a in attributes["axes"]]
    if len(node.input) > 1 and node.input[1]:
        source = constants.get(node.input[1])
        if source is None:
            return None
        if hasattr(source, "dims"):
            return [int(a) for a in np.asarray(numpy_helper.to_array(source)).reshape(-1)]
        tensor = next(a.t for a in source.attribute if a.name == "value")
        return [int(a) for a in np.asarray(numpy_helper.to_array(tensor)).reshape(-1)]
    return []


def evaluate(
    session: Any, found: dict[str, dict[str, Any]], feeds: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Run the magnitude branches (an ORT session of what ``augment`` returned): output name -> (Σ|x| per
    element, {op, n, ...}). The rows are recorded under the pseudo-backend ``accumulation:<export>`` (see
    ``worker.backend_run.record_graph_evidence``)."""
    wanted = [info["magnitude"] for info in found.values()] + [s for info in found.values() for s in info["shapes"]]
    values = dict(zip(wanted, session.run(wanted, {i.name: feeds[i.name] for i in session.get_inputs()})))
    result = {}
    for output, info in found.items():
        shapes = [list(int(d) for d in values[s]) for s in info["shapes"]]
        terms = reduction_length(info, shapes)
        if terms is None:
            continue
        meta = {"op": info["op"], "node": info["node"], "n": terms, "biases": info["biases"]}
        if info["op"] == "CumSum":
            attributes = info["attributes"]
            axis = info["axes"][0] if info["axes"] else 0
            meta.update(
                axis=axis % max(len(shapes[0]), 1),
                reverse=int(attributes.get("reverse", 0)),
                exclusive=int(attributes.get("exclusive", 0)),
            )
        result[output] = (np.asarray(values[info["magnitude"]]), meta)
    return result


def reduction_length(info: dict[str, Any], shapes: list[list[int]]) -> int | None:
    """n: the number of terms each output element sums (the longest, for CumSum)."""
    op, first = info["op"], shapes[0] if shapes else []
    if op in ("ReduceSum", "ReduceMean", "CumSum"):
        axes = info.get("axes") or []
        noop = int(info["attributes"].get("noop_with_empty_axes", 0))
        if not axes:
            return 1 if noop else int(np.prod(first)) if first else 1
        return int(np.prod([first[a] for a in axes])) if first else 1
    if op == "MatMul":
        return int(first[-1]) if first else 1
    if op == "Gemm":
        k = first[0] if info["attributes"].get("transA", 0) else first[-1]
        return int(k) + (1 if len(shapes) > 2 else 0)
    if op == "Conv":
        weight = shapes[1] if len(shapes) > 1 else []
        return int(np.prod(weight[1:])) + (1 if len(shapes) > 2 else 0) if weight else None
    return None


def terms_per_element(meta: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray | int:
    """n for every output element: the prefix length along the axis for CumSum, else the one n."""
    if meta.get("op") != "CumSum" or not shape:
        return int(meta["n"])
    axis = int(meta.get("axis", 0))
    length = shape[axis]
    position = np.arange(length)
    counts = (length - position) if meta.get("reverse") else (position + 1)
    if meta.get("exclusive"):
        counts = counts - 1
    view = [1] * len(shape)
    view[axis] = length
    return np.broadcast_to(np.maximum(counts, 1).reshape(view), shape)
