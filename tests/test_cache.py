import polars as pl
import torch

from difftest.export.cache import ExportCache, export_key
from difftest.cli import main
from difftest.record.tables import row_dicts


class Scale(torch.nn.Module):
    def __init__(self, factor: float, flag: bool = False):
        super().__init__()
        self.factor = factor
        self.flag = flag

    def forward(self, x):
        return x * self.factor


def key(module, x=None, **options):
    x = torch.ones(2, 3) if x is None else x
    return export_key("s::c", __file__, module, [("x", x)], {"exporter": "dynamo", **options})


def test_key_changes_with_everything_the_export_depends_on():
    base = key(Scale(2.0))
    assert key(Scale(2.0)) == base  # stable across instances
    assert key(Scale(3.0)) != base  # a plain attribute
    assert key(Scale(2.0, flag=True)) != base  # a flag forward might read
    assert key(Scale(2.0), x=torch.ones(2, 4)) != base  # input shape
    assert key(Scale(2.0), exporter="torchscript") != base
    assert key(Scale(2.0), transform_fn=lambda m: m) != base
    linear = torch.nn.Linear(2, 2)
    before = key(linear)
    with torch.no_grad():
        linear.weight.add_(1)
    assert key(linear) != before  # weights


KEY_IN_A_FRESH_PROCESS = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_cache import Scale, key
from difftest.record.tables import row_dicts
module = Scale(2.0)
module._no_split_modules = {{"BertLayer", "BertEmbeddings", "BertPooler", "BertSelfOutput"}}
module.options = {{"heads": frozenset({{"q", "k", "v", "o"}}), "layers": ["a", "b"]}}
print(key(module))
"""


def test_key_is_the_same_in_every_process(tmp_path):
    """Sets print in hash order, which changes with PYTHONHASHSEED: a key built from their repr would change from
    one process to the next, and a warm run would re-export every transformers model."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = KEY_IN_A_FRESH_PROCESS.format(tests=str(Path(__file__).parent))
    keys = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert len(keys) == 1


def test_cache_roundtrip_and_pruning(tmp_path):
    from difftest.export.exporter import ExportResult

    cache = ExportCache(tmp_path, max_bytes=10_000)
    cache.put("ab" * 32, ExportResult("dynamo", 1.5, onnx_bytes=b"x" * 100, opset=18, graph_inputs=["x"]))
    got = cache.get("ab" * 32)
    assert got.onnx_bytes == b"x" * 100 and got.opset == 18 and got.graph_inputs == ["x"]
    cache.put("cd" * 32, ExportResult("dynamo", 2.0, error="boom"))
    assert cache.get("cd" * 32) is None  # a failure seen once may be transient: not replayed
    cache.put("cd" * 32, ExportResult("dynamo", 2.0, error="boom"))
    assert cache.get("cd" * 32).error == "boom" and cache.get("cd" * 32).onnx_bytes is None
    cache.put("ef" * 32, ExportResult("dynamo", 1.0, onnx_bytes=b"y" * 20_000))
    assert cache.info()["bytes"] <= 10_000  # pruned back under its bound
    assert cache.clear() == cache.info()["entries"] == 0


def test_second_run_uses_the_cache(tmp_path, data_dir, capsys):
    cache = tmp_path / "cache"
    args = [
        "run",
        str(data_dir / "passing_suite.py"),
        "--backends",
        "torch,ort-cpu",
        "--probes",
        "base",
        "--cache-dir",
        str(cache),
    ]
    assert main([*args, "--out", str(tmp_path / "cold")]) == 0
    assert main([*args, "--out", str(tmp_path / "warm")]) == 0
    cold = row_dicts(pl.read_parquet(tmp_path / "cold" / "cases.parquet"), "cases")[0]
    warm = row_dicts(pl.read_parquet(tmp_path / "warm" / "cases.parquet"), "cases")[0]
    assert not cold["export_cached"] and warm["export_cached"]
    assert warm["onnx_digest"] == cold["onnx_digest"]
    assert warm["exports"]["torchscript"]["cached"] is True
    capsys.readouterr()
    assert main(["cache", "info", "--cache-dir", str(cache)]) == 0
    assert "1 export(s)" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
    assert "removed 1" in capsys.readouterr().out
