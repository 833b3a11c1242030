"""difftest: differential testing of PyTorch models deployed through ONNX.

Importing this package is cheap: torch and onnxruntime are imported only when
a case is built or run.
"""

from .cases import Case, case, importorskip, skip

__version__ = "0.1.0"
__all__ = ["Case", "case", "skip", "importorskip", "__version__"]
