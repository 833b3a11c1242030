"""The GPU checks as one command (``make gpu-check``): the CUDA tests, then the zoo on the nightly four candidates,
then the basics suite on ORT's TensorRT provider and torch.compile on CUDA.

Uses the Python it is run with (no virtual environment is created: a GPU machine may have no network, its
packages installed beforehand). Prints a summary small enough to read in a log and, when ``$OUT`` (or
``--out``) names a folder, writes ``gpu-check.json``, ``gpu-check.txt`` and the run's tables there
(``run.tar.gz``: without the exported models and pages, to re-judge and re-render elsewhere with
``difftest report DIR --rejudge``). Exit code: 0 when the tests pass and the run has no unexpected failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_TESTS = ["tests/test_backends.py", "tests/test_device_placement.py", "tests/test_gpu_night.py"]
CANDIDATES = "torch,ort-cpu,ort-cuda,torch-cuda"
# The GPU runtimes beyond the nightly four, on the basics suite: ORT's TensorRT provider (skipped with its reason
# where TensorRT's libraries are absent) at fp32 and fp16, and torch.compile on CUDA. Their verdicts are findings
# printed for the note; they do not decide gpu-check's exit code (the nightly four do).
MORE_CANDIDATES = "torch,ort-trt,ort-trt[precision=fp16],torch-compile-cuda"
MORE_TARGETS = ["suites/basics.py"]


def environment() -> dict:
    from importlib import metadata

    import onnxruntime
    import torch

    found = {}
    for dist in ("torch", "onnxruntime", "onnxruntime-gpu", "onnx", "onnxscript", "polars", "numpy", "transformers"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "versions": found,
        "onnxruntime_imported": f"{onnxruntime.__version__} from {Path(onnxruntime.__file__).parent}",
        "both_ort_distributions": "onnxruntime" in found and "onnxruntime-gpu" in found,
        "providers": onnxruntime.get_available_providers(),
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for the summary and tables")
    parser.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--targets", nargs="*", default=["suites"])
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--skip-more", action="store_true", help="do not run the basics suite on ort-trt and torch-compile-cuda"
    )
    args = parser.parse_args()
    out = Path(args.out) if args.out else None
    started = time.time()
    env = environment()
    lines = [
        f"gpu-check on {env['gpu'] or 'no GPU'}: torch {env['versions'].get('torch')} (CUDA {env['torch_cuda']}, "
        f"cuDNN {env['cudnn']}), onnxruntime {env['onnxruntime_imported']}, providers {env['providers']}"
    ]
    if env["both_ort_distributions"]:
        lines.append("note: onnxruntime and onnxruntime-gpu are both installed; the one imported is named above")
    problems = []
    if "CUDAExecutionProvider" not in env["providers"]:
        problems.append("onnxruntime has no CUDAExecutionProvider: install onnxruntime-gpu (see constraints-gpu.txt)")
    if env["gpu"] is None:
        problems.append("torch sees no GPU (torch.cuda.is_available() is False)")
    if problems:
        print("\n".join(lines + [f"cannot check: {p}" for p in problems]))
        return 2

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *GPU_TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    test_lines = [line for line in tests.stdout.splitlines() if line.strip()]
    lines.append(f"tests ({' '.join(GPU_TESTS)}): exit {tests.returncode}: {test_lines[-1] if test_lines else ''}")
    lines += [f"  {line}" for line in test_lines if line.startswith(("FAILED", "ERROR", "SKIPPED"))][:20]

    import tempfile

    run_dir = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "run"  # only a few files go to --out
    command = [
        sys.executable,
        "-m",
        "difftest",
        "run",
        *args.targets,
        "--backends",
        CANDIDATES,
        "--require",
        "ort-cuda,torch-cuda",
        "--jobs",
        str(args.jobs),
        "--timeout",
        str(args.timeout),
        "--localize-budget",
        "10",
        "--out",
        str(run_dir),
        "--no-cache",
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    lines.append(
        f"suite ({' '.join(args.targets)}, {CANDIDATES}): exit {run.returncode}, "
        f"{summary.get('cases')} cases, {summary.get('comparisons')} results; status {summary.get('status')}"
    )
    lines.append(f"  verdicts: {summary.get('labels')}")
    for failure in summary.get("failures", [])[:40]:
        lines.append(
            f"  FAIL {failure['case']} [{failure['candidate']}] {failure['label']}: {failure['reason']}: "
            f"{failure['evidence'][:160]}"
        )
    if run.returncode not in (0, 1):
        lines += [f"  {line}" for line in (run.stderr or run.stdout).strip().splitlines()[-15:]]
    more = _more_runtimes(args) if not args.skip_more else {}
    for line in more.get("lines", []):
        lines.append(line)
    lines.append(f"gpu-check took {time.time() - started:.0f} s")
    text = "\n".join(lines)
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu-check.txt").write_text(text + "\n\n" + tests.stdout[-20000:] + "\n" + run.stdout[-20000:] + "\n")
        (out / "gpu-check.json").write_text(
            json.dumps(
                {
                    "environment": env,
                    "tests_exit": tests.returncode,
                    "run_exit": run.returncode,
                    "summary": summary,
                    "more_runtimes": more.get("summary"),
                },
                indent=1,
            )
        )
        if run_dir.exists():
            _archive(run_dir, out)
    return 0 if tests.returncode == 0 and run.returncode == 0 else 1


def _more_runtimes(args) -> dict:
    """The basics suite on TensorRT and torch.compile on CUDA: a summary and lines to print."""
    import tempfile

    run_dir = Path(tempfile.mkdtemp(prefix="gpu-check-more-")) / "run"
    command = [
        sys.executable,
        "-m",
        "difftest",
        "run",
        *MORE_TARGETS,
        "--backends",
        MORE_CANDIDATES,
        "--jobs",
        str(args.jobs),
        "--timeout",
        str(args.timeout),
        "--localize-budget",
        "0",
        "--out",
        str(run_dir),
        "--no-cache",
    ]
    started = time.time()
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    lines = [
        f"more runtimes ({' '.join(MORE_TARGETS)}, {MORE_CANDIDATES}): exit {run.returncode} in "
        f"{time.time() - started:.0f} s; status {summary.get('status')}; verdicts {summary.get('labels')}"
    ]
    lines += [f"  {line.strip()}" for line in run.stdout.splitlines() if line.strip().startswith("skipped")][:6]
    for failure in summary.get("failures", [])[:20]:
        lines.append(
            f"  FAIL {failure['case']} [{failure['candidate']}] {failure['label']}: {failure['evidence'][:160]}"
        )
    if run.returncode not in (0, 1):
        lines += [f"  {line}" for line in (run.stderr or run.stdout).strip().splitlines()[-10:]]
    return {"summary": summary, "lines": lines}


def _archive(run_dir: Path, out: Path, limit: int = 15 * 2**20, parts: int = 5) -> None:
    """The run's tables, logs and config as ``run.tar.gz`` (no exported models, pages or parts) and its tensors as
    ``tensors-K.parquet`` pieces under the size a transfer allows: concatenated, they re-judge elsewhere."""
    import polars as pl

    keep = [
        "runs.parquet",
        "cases.parquet",
        "comparisons.parquet",
        "summary.json",
        "junit.xml",
        "config.json",
        "waivers.json",
    ]
    with tarfile.open(out / "run.tar.gz", "w:gz") as archive:
        for name in keep:
            if (run_dir / name).exists():
                archive.add(run_dir / name, arcname=f"run/{name}")
        if (run_dir / "logs").is_dir():
            archive.add(run_dir / "logs", arcname="run/logs")
    tensors = run_dir / "tensors.parquet"
    if not tensors.exists():
        return
    frame = pl.read_parquet(tensors)
    pieces = max(1, -(-tensors.stat().st_size // limit))
    if pieces > parts:
        frame = frame.filter(pl.col("backend") != "input")  # the inputs can be regenerated from the suite
        pieces = min(parts, pieces)
    cases = frame["case"].unique().sort().to_list()
    for k in range(pieces):
        chosen = set(cases[k::pieces])
        frame.filter(pl.col("case").is_in(list(chosen))).write_parquet(out / f"tensors-{k}.parquet")


if __name__ == "__main__":
    sys.exit(main())
