"""Test data no one here wrote: the ONNX test folders that ship with the onnx package.

- pytorch-converted and pytorch-operator: models exported from PyTorch, with PyTorch's outputs recorded;
- light: real architectures (ResNet-50, DenseNet-121, Inception, VGG-19, ...) with constant weights and
  the ONNX runner's deterministic dummy input.

Each becomes a case whose reference is the recorded outputs, run through the ONNX Runtime candidates.
`difftest run path/to/test_dir` reads any folder in the same format.
"""

import importlib.util
from pathlib import Path

from difftest.suite.onnx_tests import case_defs, opset_of

_spec = importlib.util.find_spec("onnx")
DATA = Path(_spec.origin).parent / "backend" / "test" / "data" if _spec and _spec.origin else None

# Operator versions ONNX Runtime has no CPU kernel for (its kernels for these ops start at version 7 or
# later; see docs/OperatorKernels.md in the onnxruntime repository). Seen as NOT_IMPLEMENTED at session
# build in onnxruntime 1.32 on models exported at opsets 1-6; a model that uses one cannot run at all.
NO_ORT_KERNEL = {("Add", 6), ("Sub", 6), ("Mul", 6), ("Div", 6), ("Pow", 1), ("Gemm", 6), ("PRelu", 6),
                 ("BatchNormalization", 6), ("AveragePool", 1)}


def _known(location: Path):
    import onnx
    from onnx import defs

    model_path = location / "model.onnx" if location.is_dir() else location
    opset = opset_of(location)
    if opset is None or opset >= 7:
        return None
    model = onnx.load(str(model_path), load_external_data=False)
    missing = sorted({(n.op_type, defs.get_schema(n.op_type, opset).since_version) for n in model.graph.node
                      if defs.has(n.op_type)} & NO_ORT_KERNEL)
    if not missing:
        return None
    ops = ", ".join(f"{op}-{version}" for op, version in missing)
    return ("runtime_error", f"exported at opset {opset}; ONNX Runtime has no kernel for {ops}, so the session "
            "cannot be built. Not a numerical discrepancy: convert with onnx.version_converter to test it.")


for _folder in ("pytorch-converted", "pytorch-operator", "light"):
    if DATA is not None and (DATA / _folder).is_dir():
        case_defs(DATA / _folder, tags=["onnx-test", _folder], expect=_known)
