"""Rebuild ``run/`` from the first real GPU night (H200, torch 2.11+cu130, onnxruntime-gpu 1.31.1, difftest at
3a25694): the tables of a dozen of its 279 cases, chosen to hold every kind of row its report has to triage
(one runtime's precision gap in several cases, could-not-run rows of both kinds, an export error shared by two
runtimes, expectations that no longer hold, ties, an ONNX test folder that torch cannot run, a clean pass).

    python tests/data/gpu_night/extract.py ../shared/gpu/runs/h200-2026-11-26/default
"""

import shutil
import sys
from pathlib import Path

import polars as pl

CASES = [
    "basics::mlp", "basics::dict_outputs", "basics::dynamic_batch", "models::resnet_basic", "models::lstm",
    "ops::scatter_add_duplicates", "pitfalls::slide_inference_padded", "ops::matmul_int64", "ops::max_reduce_nan",
    "ops::topk_ties", "ops::float_floor_divide", "onnx_backend::test_Conv3d_stride",
]


def main(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    (target / "logs").mkdir(parents=True)
    for table in ("cases", "comparisons", "tensors"):
        frame = pl.read_parquet(source / f"{table}.parquet").filter(pl.col("case").is_in(CASES))
        missing = set(CASES) - set(frame["case"].unique().to_list())
        if missing:
            raise SystemExit(f"{source}: no {table} rows for {sorted(missing)}")
        frame.write_parquet(target / f"{table}.parquet", compression="zstd", compression_level=19)
        if table == "cases":
            for log in frame["log"].drop_nulls().to_list():
                shutil.copyfile(source / log, target / log)
    for name in ("runs.parquet", "config.json", "waivers.json"):
        shutil.copyfile(source / name, target / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent / "run")
