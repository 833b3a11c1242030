"""Throughput of comparing and classifying matching float32 tensors (target: >= 500 MB/s per core).

    python bench/compare_speed.py [--mb 64]

Two tensors that agree within float noise (the common case in a nightly run) are classified, and the
bytes of one tensor divided by the time is reported, single-threaded numpy (OMP/MKL threads set to 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from difftest.judge.classify import classify

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n = args.mb * 2**20 // 4
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(n, dtype=np.float32)
    noisy = reference + (rng.standard_normal(n, dtype=np.float32) * 1e-7 * np.abs(reference)).astype(np.float32)
    for name, candidate in (("identical", reference.copy()), ("float noise", noisy)):
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            verdict = classify(reference, candidate)
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        print(f"{name:<12} {verdict.label:<8} {args.mb} MB in {seconds * 1e3:.0f} ms: {args.mb / seconds:.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
