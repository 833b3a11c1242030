"""difftest: differential testing of PyTorch models deployed through ONNX.

The public surface: ``@case`` / ``Case`` / ``skip`` / ``importorskip`` to declare cases in suite files, and
``check`` (one model, in this process) and ``run`` (suites, in workers) to run them from Python. The package
is laid out as the pipeline, one subpackage per stage (see the README's layout): suite → export → run (on the
backends) → record → judge → localize → report → nightly.

Importing this package is cheap: torch and onnxruntime are imported only when a case is built or run.
"""

from .api import Result, Run, Session, check, run
from .suite.cases import Case, case, importorskip, skip

__version__ = "0.1.0"
__all__ = ["Case", "case", "skip", "importorskip", "check", "run", "Session", "Result", "Run", "__version__"]
