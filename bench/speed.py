"""How fast is difftest against the loop a user would write? `make bench` (or python bench/speed.py).

On one fixed set of zoo cases, in one sitting, each configuration runs in a fresh subprocess, REPEATS times:

1. hand loop: per case torch.onnx.export, InferenceSession, run, run torch, np.testing.assert_allclose;
2. torch.onnx.verification.verify_onnx_program on each case's dynamo export (where it applies);
3. difftest, same work (--backends torch,ort-cpu --probes base --reruns 0 --no-oracle --localize-budget 0),
   cold (empty export cache) and warm (cache filled);
4. difftest, full work (all probes, float64 oracle, reruns, localization of failures), warm (exports and
   localizations cached by an earlier full run, as in a nightly job).

It prints the median wall time, CPU time (process and children) and peak memory of each, the spread
between repeats (how noisy the machine was), and the ratios against the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    *(
        f"suites/pitfalls.py::{n}"
        for n in (
            "slide_inference_inplace",
            "slide_inference_padded",
            "pad_order_swapped",
            "pad_order_correct",
            "resize_size_from_int",
            "resize_size_from_shape",
            "kwargs_baked",
            "kwargs_as_input",
            "argmax_ties",
            "argmax_no_ties",
            "argmax_wrong_index",
            "nms_equal_scores",
        )
    ),
    *(
        f"suites/basics.py::{n}"
        for n in (
            "mlp",
            "mlp_torchscript",
            "conv_bn_relu",
            "integer_arithmetic",
            "attention_block",
            "dict_outputs",
            "dynamic_batch",
        )
    ),
    *(
        f"suites/ops.py::{n}"
        for n in (
            "interpolate_bilinear_align0_scale1_5",
            "pad_reflect_2d",
            "int_floor_divide",
            "softmax_rows_of_neg_inf",
            "layer_norm",
            "gelu_tanh",
            "grid_sample_bilinear_zeros_align0",
            "topk_ties",
            "einsum_attention",
            "matmul_broadcast",
        )
    ),
    *(f"suites/models.py::{n}" for n in ("resnet_basic", "mobilenet_v2", "vit", "lstm")),
]


def measure(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall, CPU (self + children) and peak RSS of one subprocess run."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - t\n"
        "c = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'wall': wall, 'cpu': c.ru_utime + c.ru_stime, 'peak_mb': c.ru_maxrss / 1024, "
        "'code': code}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def hand_loop() -> None:
    """What a user writes: export, session, run both, assert_allclose; one process, one case after another."""
    import io
    import warnings

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from difftest.suite.cases import build
    from difftest.suite.discover import find_definition
    from difftest.suite.cases import CaseRef

    warnings.simplefilter("ignore")
    for target in CASES:
        path, name = target.split("::")
        built = build(find_definition(CaseRef(str(ROOT / path), name)))
        module, args, kwargs = built.module, built.args, dict(built.kwargs or {})
        try:
            if (built.exporter or "dynamo") == "dynamo":
                model = torch.onnx.export(module, args, kwargs=kwargs or None, dynamo=True, verbose=False).model_proto
            else:
                buffer = io.BytesIO()
                torch.onnx.export(module, args + ((kwargs,) if kwargs else ()), buffer, dynamo=False)
                model = onnx.load_from_string(buffer.getvalue())
            if built.onnx_transform:
                model = built.onnx_transform(model)
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), [*args, *kwargs.values()])}
            got = session.run(None, feeds)
            with torch.inference_mode():
                expected = module(*args, **kwargs)
            expected = expected if isinstance(expected, (tuple, list)) else [expected]
            for e, g in zip(expected, got):
                np.testing.assert_allclose(g, e.numpy(), rtol=1e-5, atol=1e-5)
        except Exception:  # a user's loop records the failure and goes on, as difftest does
            continue


def verify_loop() -> None:
    """torch's own check: verify_onnx_program on each dynamo export (cases it cannot export are skipped)."""
    import warnings

    import torch
    from torch.onnx.verification import verify_onnx_program

    from difftest.suite.cases import CaseRef, build
    from difftest.suite.discover import find_definition

    warnings.simplefilter("ignore")
    for target in CASES:
        path, name = target.split("::")
        built = build(find_definition(CaseRef(str(ROOT / path), name)))
        try:
            program = torch.onnx.export(
                built.module, built.args, kwargs=dict(built.kwargs or {}) or None, dynamo=True, verbose=False
            )
            verify_onnx_program(program)
        except Exception:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inner", choices=["hand", "verify"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner == "hand":
        hand_loop()
        return 0
    if args.inner == "verify":
        verify_loop()
        return 0

    work = Path(tempfile.mkdtemp(prefix="difftest-bench-"))
    difftest = [sys.executable, "-m", "difftest", "run", *CASES, "--backends", "torch,ort-cpu"]
    same = ["--probes", "base", "--reruns", "0", "--no-oracle", "--localize-budget", "0"]
    results: dict[str, list[dict[str, float]]] = {k: [] for k in ("hand", "verify", "cold", "warm", "full")}
    for repeat in range(args.repeats):
        cache = work / f"cache{repeat}"
        results["hand"].append(measure([sys.executable, __file__, "--inner", "hand"]))
        results["verify"].append(measure([sys.executable, __file__, "--inner", "verify"]))
        results["cold"].append(
            measure([*difftest, *same, "--cache-dir", str(cache), "--out", str(work / f"c{repeat}")])
        )
        results["warm"].append(
            measure([*difftest, *same, "--cache-dir", str(cache), "--out", str(work / f"w{repeat}")])
        )
        measure([*difftest, "--cache-dir", str(cache), "--out", str(work / f"fw{repeat}")])  # fills the localizations
        results["full"].append(measure([*difftest, "--cache-dir", str(cache), "--out", str(work / f"f{repeat}")]))
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    print(report(results, len(CASES)))
    return 0


def report(results: dict[str, list[dict[str, float]]], cases: int) -> str:
    names = {
        "hand": "hand-written loop",
        "verify": "verify_onnx_program loop",
        "cold": "difftest same work, cold",
        "warm": "difftest same work, warm",
        "full": "difftest full work, warm",
    }
    med = {
        k: {m: statistics.median(r[m] for r in runs) for m in ("wall", "cpu", "peak_mb")} for k, runs in results.items()
    }
    lines = [
        f"{cases} cases, {len(next(iter(results.values())))} repeats, {os.cpu_count()} CPUs "
        f"(median; spread = (max - min) / median of wall time)",
        f"{'configuration':<28}{'wall s':>9}{'cpu s':>9}{'peak MB':>9}{'spread':>9}",
    ]
    for key, label in names.items():
        walls = [r["wall"] for r in results[key]]
        spread = (max(walls) - min(walls)) / med[key]["wall"] if med[key]["wall"] else 0
        lines.append(
            f"{label:<28}{med[key]['wall']:>9.1f}{med[key]['cpu']:>9.1f}{med[key]['peak_mb']:>9.0f}"
            f"{100 * spread:>8.0f}%"
        )
    ratio = lambda a, b: med[a]["wall"] / med[b]["wall"]  # noqa: E731
    lines += [
        "",
        f"cold / hand loop      {ratio('cold', 'hand'):.2f}   (target <= 0.7)",
        f"cold / warm           {ratio('cold', 'warm'):.1f}   (target >= 5)",
        f"full warm / same warm {ratio('full', 'warm'):.2f}   (target <= 2)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
