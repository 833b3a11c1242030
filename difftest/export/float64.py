"""An ONNX graph widened to float64: the oracle of a bare ONNX file, which has no PyTorch model to run in float64.

Every float32, float16 and bfloat16 value becomes float64: graph inputs and outputs, initializers, ``Constant`` and
``ConstantOfShape`` values, ``Cast`` targets and the ``dtype`` attributes of ops that make tensors (``RandomNormal``,
``EyeLike`` …), in subgraphs too. The widened graph is run by the ONNX reference evaluator (numpy), so its
arithmetic is float64 throughout. Where that cannot be done the reason is returned, never a silent fallback: ops
whose float64 form the specification does not define in the graph's opset are left to the evaluator to refuse.
"""

from __future__ import annotations

from typing import Any

from onnx import TensorProto

NARROW = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16}
DOUBLE = TensorProto.DOUBLE
DTYPE_ATTRIBUTES = {"to", "dtype"}  # Cast's target; RandomNormal/RandomUniform/EyeLike/…'s output type


def widened(model: Any) -> Any:
    """A float64 copy of ``model`` (the model itself is not changed)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _widen_graph(copy.graph)
    return copy


def _widen_graph(graph: Any) -> None:
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type in NARROW:
            value.type.tensor_type.elem_type = DOUBLE
    for index, initializer in enumerate(graph.initializer):
        if initializer.data_type in NARROW:
            graph.initializer[index].CopyFrom(_widen_tensor(initializer))
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name in DTYPE_ATTRIBUTES and attribute.type == attribute.INT and attribute.i in NARROW:
                attribute.i = DOUBLE
            if attribute.type == attribute.TENSOR and attribute.t.data_type in NARROW:
                attribute.t.CopyFrom(_widen_tensor(attribute.t))
            if attribute.HasField("g"):
                _widen_graph(attribute.g)
            for sub in attribute.graphs:
                _widen_graph(sub)


def _widen_tensor(tensor: Any) -> Any:
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name)
