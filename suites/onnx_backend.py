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
NO_ORT_KERNEL = {
    ("Add", 6),
    ("Sub", 6),
    ("Mul", 6),
    ("Div", 6),
    ("Pow", 1),
    ("Gemm", 6),
    ("PRelu", 6),
    ("BatchNormalization", 6),
    ("AveragePool", 1),
}


# OpenVINO's CPU plugin has no float64 kernels: it computes a float64 graph in float32, so float64 values beyond
# float32's range come back as ±FLT_MAX (3.4e38) or inf (https://github.com/openvinotoolkit/openvino/issues/37968).
FLOAT32_MAX = 3.4028234663852886e38
# Seen on OpenVINO 2026.4.1, at bf16 and at f32, while ONNX Runtime and the recorded outputs agree: its Softmax
# output is 0.125 where the recorded output (1000 equal classes) is 0.001. Not localized: an ONNX test folder has no
# PyTorch model to map values to.
OPENVINO_WRONG = {
    "light_squeezenet": "OpenVINO's CPU plugin computes another softmax over the 1000 classes (0.125 "
    "where ONNX Runtime and the recorded output give 0.001, at f32 as at bf16)"
}


def _known(location: Path):
    """What a test folder is known to do on some runtime: ({candidate pattern: label}, why), or None."""
    expect, why = {}, []
    ort = _no_ort_kernel(location)
    if ort:
        expect["ort-*"] = "runtime_error"
        why.append(ort)
    if _float64_beyond_float32(location):
        expect["openvino*"] = "mismatch"
        why.append(
            "its float64 values exceed float32's range, and OpenVINO computes float64 in float32 (they come "
            "back as ±3.4e38): https://github.com/openvinotoolkit/openvino/issues/37968"
        )
    name = location.name.removesuffix(".onnx")
    if name in OPENVINO_WRONG:
        expect["openvino*"] = "mismatch"
        why.append(OPENVINO_WRONG[name])
    return (expect, " ".join(why)) if expect else None


def _no_ort_kernel(location: Path) -> str | None:
    import onnx
    from onnx import defs

    model_path = location / "model.onnx" if location.is_dir() else location
    opset = opset_of(location)
    if opset is None or opset >= 7:
        return None
    model = onnx.load(str(model_path), load_external_data=False)
    missing = sorted(
        {(n.op_type, defs.get_schema(n.op_type, opset).since_version) for n in model.graph.node if defs.has(n.op_type)}
        & NO_ORT_KERNEL
    )
    if not missing:
        return None
    ops = ", ".join(f"{op}-{version}" for op, version in missing)
    return (
        f"Exported at opset {opset}; ONNX Runtime has no kernel for {ops}, so its session cannot be built. Not a "
        "numerical discrepancy: convert with onnx.version_converter to test it on ONNX Runtime."
    )


def _float64_beyond_float32(location: Path) -> bool:
    """Whether the folder's recorded float64 inputs or outputs hold finite values float32 cannot (a property of the
    test data: read from its .pb files)."""
    import numpy as np

    from difftest.suite.onnx_tests import read_pb

    if not location.is_dir():
        return False
    for pb in sorted(location.glob("test_data_set_*/*.pb")):
        try:
            values = np.asarray(read_pb(pb))
        except Exception:
            continue
        if values.dtype == np.float64 and np.any(np.abs(values[np.isfinite(values)]) > FLOAT32_MAX):
            return True
    return False


for _folder in ("pytorch-converted", "pytorch-operator", "light"):
    if DATA is not None and (DATA / _folder).is_dir():
        case_defs(DATA / _folder, tags=["onnx-test", _folder], expect=_known)
