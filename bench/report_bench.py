"""Time the report for a large run and measure its index: render(run) on N cases built from a real run.

    python bench/report_bench.py [RUN_DIR] [--cases 500] [--charts/--no-charts]

The cases, tensors and comparisons of RUN_DIR (default reports/latest) are repeated under new case ids
until there are N cases, written as a new run directory, and rendered; the script prints the render time,
the size of index.html and of the whole report.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def scaled_copy(source: Path, target: Path, cases: int) -> None:
    import polars as pl

    from difftest.record.tables import read_table, write_atomic

    tables = {name: read_table(source, name) for name in ("runs", "cases", "tensors", "comparisons")}
    originals = tables["cases"]["case"].to_list()
    copies = []
    for i in range(-(-cases // len(originals))):
        mapping = {c: f"{c}_{i:04d}" for c in originals}
        copies.append(
            {name: df.with_columns(pl.col("case").replace(mapping)) for name, df in tables.items() if name != "runs"}
        )
    target.mkdir(parents=True)
    for name in ("cases", "tensors", "comparisons"):
        frame = pl.concat([c[name] for c in copies])
        keep = frame["case"].unique(maintain_order=True).head(cases)
        write_atomic(frame.filter(pl.col("case").is_in(keep.to_list())), target / f"{name}.parquet")
    write_atomic(tables["runs"], target / "runs.parquet")
    if (source / "onnx").exists():
        shutil.copytree(source / "onnx", target / "onnx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", default="reports/latest")
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--no-charts", action="store_true")
    args = parser.parse_args(argv)

    from difftest.report import render

    source = Path(args.run_dir)
    work = Path(tempfile.mkdtemp(prefix="difftest-report-bench-")) / "run"
    scaled_copy(source, work, args.cases)
    started = time.perf_counter()
    render(work, charts=not args.no_charts)
    seconds = time.perf_counter() - started
    index = (work / "index.html").stat().st_size
    total = sum(p.stat().st_size for p in work.rglob("*") if p.is_file() and p.suffix in (".html", ".pb", ".txt"))
    print(
        f"{args.cases} cases from {source}: render {seconds:.2f} s, index.html {index / 1e6:.2f} MB, "
        f"report (pages + repro bundles) {total / 1e6:.1f} MB"
    )
    shutil.rmtree(work.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
