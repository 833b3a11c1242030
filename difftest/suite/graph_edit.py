"""Small, explicit edits of ONNX graphs: read and replace constants, change attributes.

Used by cases' ``onnx_transform`` (to reproduce a faulty graph rewrite) and by
fault injection. Each function copies nothing it does not need and says
clearly when the graph does not hold what it was asked to edit.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def nodes_of(model: Any, op_type: str) -> list[Any]:
    found = [n for n in model.graph.node if n.op_type == op_type]
    if not found:
        ops = sorted({n.op_type for n in model.graph.node})
        raise ValueError(f"the graph has no {op_type} node (it has: {', '.join(ops)})")
    return found


def _source(model: Any, name: str) -> str:
    """Follow Identity/Cast chains back to the value they copy (exporters often cast constant pads)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    seen = set()
    while name in producers and producers[name].op_type in ("Identity", "Cast") and name not in seen:
        seen.add(name)
        name = producers[name].input[0]
    return name


def constant(model: Any, name: str) -> np.ndarray:
    """The value of an initializer or Constant node output called ``name`` (through Identity/Cast)."""
    from onnx import numpy_helper

    name = _source(model, name)

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
    raise ValueError(f"{name!r} is not a constant of the graph (not an initializer nor a Constant output)")


def set_constant(model: Any, name: str, value: np.ndarray) -> None:
    """Replace the value of an initializer or Constant node output in place (through Identity/Cast)."""
    from onnx import numpy_helper

    name = _source(model, name)
    value = np.asarray(value).astype(constant(model, name).dtype)
    tensor = numpy_helper.from_array(value, name)
    for init in model.graph.initializer:
        if init.name == name:
            init.CopyFrom(tensor)
            return
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    attr.t.CopyFrom(tensor)
                    return
    raise ValueError(f"{name!r} is not a constant of the graph")


def set_attribute(node: Any, name: str, value: Any) -> None:
    from onnx import helper

    for i, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def fold_input(model: Any, node: Any, input_index: int) -> str:
    """Make a node's input a plain initializer when it is computed from constants only.

    Exporters often build constant inputs through small chains (the TorchScript exporter's pads go through
    Reshape, Slice and Transpose); evaluating that chain once lets the value be read and edited directly.
    Returns the (possibly new) input name; raises ValueError when the value depends on a graph input.
    """
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    name = node.input[input_index]
    try:
        constant(model, name)
        return name
    except ValueError:
        pass
    producers = {out: n for n in model.graph.node for out in n.output}
    known = {i.name for i in model.graph.initializer}
    needed, stack = [], [name]
    while stack:
        value = stack.pop()
        if value in known or value == "":
            continue
        producer = producers.get(value)
        if producer is None:
            raise ValueError(f"{name!r} depends on the graph input {value!r}: it is not a constant")
        if producer not in needed:
            needed.append(producer)
            stack.extend(producer.input)
    order = [n for n in model.graph.node if n in needed]
    sub = helper.make_model(
        helper.make_graph(
            order, "fold", [], [helper.make_tensor_value_info(name, 0, None)], initializer=list(model.graph.initializer)
        ),
        opset_imports=list(model.opset_import),
    )
    value = ReferenceEvaluator(sub).run(None, {})[0]
    folded = f"{name}_folded"
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), folded))
    node.input[input_index] = folded
    return folded


def edit_constant_input(op_type: str, input_index: int, edit: Callable[[np.ndarray], np.ndarray]) -> Callable:
    """A transform that rewrites one constant input of every ``op_type`` node (folding it first if needed)."""

    def transform(model: Any) -> Any:
        for node in nodes_of(model, op_type):
            name = fold_input(model, node, input_index)
            set_constant(model, name, edit(constant(model, name)))
        return model

    transform.__name__ = f"edit_{op_type}_input{input_index}"
    return transform


def swap_pad_begin_end(pads: np.ndarray) -> np.ndarray:
    """ONNX pads are (begin_0..begin_n, end_0..end_n); swap the halves, as a rewrite that read
    PyTorch's (left, right) pairs in the wrong order would."""
    half = len(pads) // 2
    return np.concatenate([pads[half:], pads[:half]]).astype(pads.dtype)


def replace_op(op_from: str, op_to: str, **attributes: Any) -> Callable:
    """A transform that turns every ``op_from`` node into ``op_to`` (attributes replaced if given)."""

    def transform(model: Any) -> Any:
        for node in nodes_of(model, op_from):
            node.op_type = op_to
            if attributes:
                del node.attribute[:]
                for name, value in attributes.items():
                    set_attribute(node, name, value)
        return model

    transform.__name__ = f"replace_{op_from}_with_{op_to}"
    return transform


def rename_value(model: Any, old: str, new: str) -> None:
    """Every node that writes or reads the value ``old`` now writes or reads ``new`` (graph outputs keep theirs)."""
    for node in model.graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]


def rewire_output(
    make_nodes: Callable[[str, str], list[Any]], index: int = 0, elem_type: int | None = None
) -> Callable:
    """A transform that inserts nodes between graph output ``index`` and its producer.

    ``make_nodes(inner, outer)`` returns nodes reading ``inner`` (the old value) and writing ``outer``
    (the graph output's name); the graph output's declared shape is dropped, as a rewrite's would be,
    and its element type becomes ``elem_type`` when given.
    """

    def transform(model: Any) -> Any:
        output = model.graph.output[index]
        outer = output.name
        inner = f"{outer}_before_rewrite"
        rename_value(model, outer, inner)
        model.graph.node.extend(make_nodes(inner, outer))
        output.type.tensor_type.ClearField("shape")
        if elem_type is not None:
            output.type.tensor_type.elem_type = elem_type
        return model

    return transform


def scale_constant_input(op_type: str, input_index: int, factor: float) -> Callable:
    """A transform that multiplies one constant input (e.g. a weight) of every ``op_type`` node."""
    return edit_constant_input(op_type, input_index, lambda w: (w * factor).astype(w.dtype))
