"""What a worker is given for one case, and what every stage of it shares: the stage marker a crash report names,
the seeding before every stage, and tracebacks in the user's terms."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..suite.cases import CaseRef

SEED = 0
# The defaults of what a run may spend on a failing case and store per output (RunConfig, the CLI and Task read
# these): seconds to localize failing candidates, seconds for their automatic controls, and the size above which an
# output is stored as a sample and compared in full where it lives. ``difftest.check`` turns localization off by
# default (``api.CHECK_LOCALIZE_BUDGET``).
LOCALIZE_BUDGET = 60.0
CONTROL_BUDGET = 60.0
MAX_TENSOR_BYTES = 256 * 2**20

# Set by the worker process: called with the stage a case enters, so a crash can name it.
stage_hook: Any = None


def enter_stage(name: str) -> None:
    """Say which stage the case enters (the worker reports it, so a crash can name it)."""
    if stage_hook is not None:
        stage_hook(name)


@dataclass
class Task:
    """What the parent sends a worker: picklable, no models."""

    ref: CaseRef
    run_id: str
    backends: list[str]  # available backends to run, reference first
    reference: str
    exporter: str | None  # run-wide override, else the case's, else dynamo
    artifacts_dir: str
    reference_variants: list[str] = field(default_factory=list)  # e.g. the float64 oracle: no reruns
    probes: list[str] = field(default_factory=lambda: ["base"])
    reruns: int = 1
    threads: int | None = None
    max_tensor_bytes: int = MAX_TENSOR_BYTES
    cache_dir: str | None = None  # the export cache; None runs every export
    localize_budget: float = LOCALIZE_BUDGET  # seconds per case to localize failing candidates (0: off)
    control_budget: float = CONTROL_BUDGET  # seconds per case for automatic controls on failing candidates (0: off)
    # How a bare ONNX file's inputs are made: {"shapes": {input: [dims]}, "ranges": {input: [lo, hi]},
    # "data": path of an .npz or a folder of .pb} (see ``bare_onnx``).
    onnx_inputs: dict | None = None


def user_traceback(exc: BaseException) -> str:
    """The traceback with difftest's own frames left out, the user's innermost frame last; all frames when none
    is the user's (then the bug is difftest's, and its frames are what to report)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = str(Path(__file__).resolve().parent.parent)
    user = [f for f in frames if not str(Path(f.filename).resolve()).startswith(ours)]
    if not user:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (
        "Traceback (difftest's own frames left out):\n"
        + "".join(traceback.StackSummary.from_list(user).format())
        + "".join(traceback.format_exception_only(type(exc), exc))
    )


RESEED = SEED + 1  # the reference's second run, which tells a model that samples (see ``judge.randomness``)


def seed(value: int = SEED) -> None:
    """The same random state before every stage (``value`` for the reference's reseeded run). (torch.manual_seed
    also queues a CUDA seeding, recording a stack trace each time, when CUDA is not initialised yet: the CPU
    generator is seeded directly then, and the CUDA ones when CUDA is up.)"""
    import random

    import torch

    random.seed(value)
    np.random.seed(value)
    if torch.cuda.is_initialized():
        torch.manual_seed(value)
    else:
        torch.default_generator.manual_seed(value)
