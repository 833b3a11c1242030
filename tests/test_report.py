"""The HTML report: pictures, worst elements, repro bundles, the trend across runs, and a real browser."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

from difftest.cli import main
from difftest.report.charts import comparison_charts
from difftest.report.details import two_orderings, worst_elements


def _page(out: Path, name: str) -> str:
    (page,) = [p for p in (out / "cases").glob("*.html") if p.name.startswith(f"tiny_suite__{name}-")]
    return page.read_text()


def test_mismatch_page_has_worst_elements_and_no_chart_for_six_elements(tiny_run):
    _, out = tiny_run
    html = _page(out, "wrong_op")
    assert 'class="chart" data-kind=' not in html  # 6 elements: the table of worst elements says it all
    assert html.count('src="../assets/vega.min.js"') == 1 and (out / "assets" / "vega.min.js").exists()
    assert "<title>tiny_suite::wrong_op — difftest</title>" in html
    assert "A closer look" in html
    assert "[1, 2]" in html  # the worst element: x=5, 10 vs 7


def test_charts_only_where_they_say_something():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((8, 8)).astype(np.float32)
    charts = comparison_charts(ref, ref + 1e-3, "y")
    assert set(charts) == {"histogram", "scatter", "heatmap"}
    # every non-zero |Δ| equal: the one bin must hold all 64 (the first edge used to round above the minimum)
    bins = charts["histogram"]["data"]["values"]
    assert sum(b["count"] for b in bins) == 64 and all(b["from"] < b["to"] for b in bins)
    diff = np.abs(ref.astype(np.float64) - (ref + 1e-3).astype(np.float64))
    assert bins[0]["from"] <= diff.min() and bins[-1]["to"] >= diff.max()
    # the scatter's axes share one domain, and the chart is square: y = x is the diagonal
    layer = charts["scatter"]["layer"][1]["encoding"]
    assert layer["x"]["scale"]["domain"] == layer["y"]["scale"]["domain"]
    assert charts["scatter"]["width"] == charts["scatter"]["height"]
    assert comparison_charts(ref[:1, :4], ref[:1, :4] + 1, "tiny") == {}  # 4 elements: the table is enough
    index = np.arange(64).reshape(8, 8)
    assert comparison_charts(index, index[::-1], "indices") == {}  # an index that moved is not an error map


def test_tie_is_drawn_as_two_orderings():
    ref = np.array([[2, 5, 7, 1], [0, 1, 2, 3]])
    cand = np.array([[2, 7, 5, 1], [0, 1, 2, 3]])
    ranked = np.array([[0, 0, 1, 0, 0, 3, 0, 3], [1, 2, 3, 4, 5, 6, 7, 8]], np.float32)
    shown = two_orderings(ref, cand, ranked)
    assert shown["note"] == "1 of 2 slices differ"
    (row,) = shown["rows"]
    assert row["reference"] == "2 5 7 1  → values 1 3 3 0" and row["candidate"] == "2 7 5 1  → values 1 3 3 0"
    assert two_orderings(ref, ref) is None


def test_worst_elements_orders_by_difference_and_shows_tied_values():
    ref = np.array([1.0, 2.0, 3.0], np.float32)
    cand = np.array([1.0, 2.5, 0.0], np.float32)
    rows = worst_elements(ref, cand)
    assert [r["index"] for r in rows] == [[2], [1]]
    ties = worst_elements(np.array([1]), np.array([2]), ranked=np.array([[1.0, 3.0, 3.0]]))
    assert ties[0]["tied_values"] == "3 vs 3"


def test_repro_bundle_replays_the_discrepancy(tiny_run):
    _, out = tiny_run
    (bundle,) = [p for p in (out / "repro").iterdir() if p.name.startswith("tiny_suite__wrong_op-")]
    model = onnx.load(str(bundle / "model.onnx"))
    inputs = {}
    for i, graph_input in enumerate(model.graph.input):
        tensor = onnx.TensorProto()
        tensor.ParseFromString((bundle / "test_data_set_0" / f"input_{i}.pb").read_bytes())
        assert tensor.name == graph_input.name
        inputs[tensor.name] = numpy_helper.to_array(tensor)
    (got,) = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, inputs
    )
    expected = numpy_helper.to_array(onnx.load_tensor(str(bundle / "test_data_set_0" / "output_0.pb")))
    recorded = numpy_helper.to_array(onnx.load_tensor(str(bundle / "outputs" / "ort-cpu" / "output_0.pb")))
    assert np.array_equal(got, recorded) and not np.array_equal(got, expected)
    assert "wrong_op" in (bundle / "README.txt").read_text()
    assert "repro/tiny_suite__wrong_op-" in _page(out, "wrong_op")


def test_trend_across_runs_in_one_folder(tmp_path, data_dir):
    root = tmp_path / "reports"
    args = [str(data_dir / "passing_suite.py"), "--backends", "torch,ort-cpu", "--probes", "base", "--no-oracle"]
    first, second = root / "20260101-000000", root / "20260102-000000"
    assert main(["run", *args, "--out", str(first)]) == 0
    assert main(["run", *args, "--out", str(second)]) == 0
    index = (second / "index.html").read_text()
    assert "Trend (2 runs in this folder)" in index and "20260101-000000" in index
    assert "since 0101-0000" in index
    assert "Trend" not in (first / "index.html").read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (.ci/run installs Debian's chromium)")
@pytest.mark.parametrize("width", [1400, 420])
def test_report_renders_in_a_real_browser(tiny_run, tmp_path, width):
    _, out = tiny_run
    pages = [out / "index.html", next((out / "cases").glob("tiny_suite__wrong_op-*.html"))]
    for page in pages:
        shot = tmp_path / f"{page.stem}-{width}.png"
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--window-size={width},1000",
                "--virtual-time-budget=2000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "tiny_suite::" in dom.stdout
        if page.name == "index.html":
            assert "of 8 cases" in dom.stdout  # the filter script ran and counted the rows
        else:
            assert "A closer look" in dom.stdout and "[1, 2]" in dom.stdout
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--window-size={width},1000",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        assert shot.stat().st_size > 10_000
