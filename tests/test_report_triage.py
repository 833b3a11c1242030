"""The morning read of a real GPU night: one sentence, three sections, folded variants, links that resolve.

The run is a dozen cases of the first H200 night (``tests/data/gpu_night/``, extracted by its ``extract.py``),
re-judged here on CPU from its recorded tensors, as ``difftest report DIR --rejudge`` does for a user.
"""

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import polars as pl
import pytest

from difftest.cli import main

GPU_NIGHT = Path(__file__).parent / "data" / "gpu_night" / "run"


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name):
                self.hrefs.append(attrs[name])


def _parse(page: Path) -> _Links:
    links = _Links()
    links.feed(page.read_text())
    return links


def _text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'").replace("&amp;", "&")


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("night") / "merged"  # not a timestamp: the nightly's merged/ folder
    shutil.copytree(GPU_NIGHT, run)
    assert main(["report", str(run), "--rejudge"]) == 1  # unexpected failures: the exit code says so
    return run


def test_opens_with_one_sentence_and_three_sections(night):
    text = _text((night / "index.html").read_text())
    headline = (
        "6 discrepancies in 5 cases (4 share one pattern on ort-cuda); 2 cases could not run on torch-cuda "
        "(setup); 1 case could not run on ort-cpu, ort-cuda (exporter limitation); 1 case could not run on "
        "torch-cuda (backend limitation); 1 expectation to update."
    )
    assert headline in text
    assert (
        text.index(headline)
        < text.index("Discrepancies (6)")
        < text.index("Could not run (4)")
        < text.index("Expectations that no longer hold (1)")
    )
    assert "No baseline: new and known failures cannot be told apart" in text
    # both ORT distributions were installed; the sessions' providers say which one was imported
    assert (
        "Two ONNX Runtime distributions are installed side by side (onnxruntime 1.30.0, onnxruntime-gpu 1.31.1)" in text
        and "only onnxruntime-gpu provides" in text
    )

    discrepancies = _section(text, "Discrepancies (6)", "Could not run")
    assert "4 of these share one pattern" in discrepancies and "TF32 is not ruled out" in discrepancies
    for case in ("basics::mlp", "basics::dict_outputs", "basics::dynamic_batch", "models::resnet_basic"):
        assert case in discrepancies

    could_not = _section(text, "Could not run (4)", "Expectations that no longer hold")
    setup = _section(could_not, "Setup:", "Backend limitations")
    assert "ops::scatter_add_duplicates" in setup and "pitfalls::slide_inference_padded" in setup
    limitation = could_not[could_not.index("Backend limitations") :]
    assert "ops::matmul_int64" in limitation
    # one export feeds both ONNX runtimes: one row, its twin folded, the exporter's own summary not its boilerplate
    assert "models::lstm ort-cpu same in ort-cuda" in limitation
    assert "Found the following conflicts between user-specified ranges and inferred ranges" in limitation
    assert "This is step 1/3" not in limitation

    expectations = text[text.index("Expectations that no longer hold (1)") :]
    assert "ops::max_reduce_nan" in expectations and "remove that expectation for ort-cuda" in expectations

    # ONNX test folders are not applicable on eager torch: said so, and not counted as skipped
    assert re.search(r"\b0 skipped\b", text) and re.search(r"\b1 not applicable\b", text)


def test_every_link_resolves_inside_the_run_folder(night):
    pages = [night / "index.html", *sorted((night / "cases").glob("*.html"))]
    assert len(pages) == 13
    checked = 0
    for page in pages:
        for href in _parse(page).hrefs:
            url = urlparse(href)
            assert not url.scheme and not url.netloc, f"{page.name}: {href} leaves the run folder"
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            assert target.is_relative_to(night.resolve()), f"{page.name}: {href} points outside the run"
            assert target.exists(), f"{page.name}: {href} is dead"
            if url.fragment and target.suffix == ".html":
                assert url.fragment in _parse(target).ids, f"{page.name}: {href} has no #{url.fragment}"
            checked += 1
    assert checked > 100


def test_failure_rows_link_to_their_candidate_and_to_each_other(night):
    index = (night / "index.html").read_text()
    row = re.search(r'href="(cases/models__lstm-[0-9a-f]+\.html)#c-ort-cpu"', index)
    assert row, "the lstm export error row links to its candidate's row on the case page"
    page = (night / row.group(1)).read_text()
    assert 'id="c-ort-cpu"' in page and "next failure" in page and "previous failure" in page
    junit = (night / "junit.xml").read_text()
    assert f'<property name="url" value="{row.group(1)}#c-ort-cuda" />' in junit


def test_case_pages_say_what_is_missing_and_what_is_the_same(night):
    resnet = _text(next((night / "cases").glob("models__resnet_basic-*.html")).read_text())
    assert "torch-cuda: not localized, it runs the PyTorch model itself: there is no graph to bisect" in resnet
    ties = _text(next((night / "cases").glob("ops__topk_ties-*.html")).read_text())
    assert "Identical outputs on every probe (the same digests): ort-cpu = ort-cuda" in ties
    assert "ort-cpu = ort-cuda · output_1" in ties  # one closer look serves both
    assert "The same elements in two orders" in ties and 'data-kind="heatmap"' not in ties
    passing = next((night / "cases").glob("ops__float_floor_divide-*.html")).read_text()
    assert "Every candidate agrees with the reference" in _text(passing)
    assert re.search(r"<details>\s*<summary>details: the case", passing)


def test_a_variant_that_repeats_its_twin_is_folded(tmp_path):
    """A night with ``ort-cuda[opt=disable]`` beside ``ort-cuda`` giving the same numbers: one row per root cause."""
    run = tmp_path / "night"
    shutil.copytree(GPU_NIGHT, run)
    twin = "ort-cuda[opt=disable]"
    tensors = pl.read_parquet(run / "tensors.parquet")
    tensors = pl.concat(
        [tensors, tensors.filter(pl.col("backend") == "ort-cuda").with_columns(pl.lit(twin).alias("backend"))]
    )
    tensors.write_parquet(run / "tensors.parquet")
    runs = pl.read_parquet(run / "runs.parquet").with_columns(pl.col("backends_requested").list.concat(pl.lit([twin])))
    runs.write_parquet(run / "runs.parquet")
    cases = pl.read_parquet(run / "cases.parquet")
    cases.with_columns(pl.col("exports").str.replace(r'"ort-cuda":', f'"{twin}": null, "ort-cuda":')).write_parquet(
        run / "cases.parquet"
    )
    assert main(["report", str(run), "--rejudge"]) == 1  # unexpected failures: the exit code says so
    text = _text((run / "index.html").read_text())
    assert "6 discrepancies in 5 cases" in text  # not 10: the twin's rows are folded into ort-cuda's
    assert text.count(f"same in {twin}") >= 4
    assert "models::lstm ort-cpu same in ort-cuda, ort-cuda[opt=disable]" in text


TWO_CASES = """
import torch
from difftest import case


class Scale(torch.nn.Module):
    def forward(self, x):
        return x * 3


@case(exporter="torchscript")
def first():
    return Scale().eval(), (torch.ones(2, 3),)


@case(exporter="torchscript")
def second():
    return Scale().eval(), (torch.arange(6.0),)
"""


def test_new_and_known_in_folders_that_are_not_timestamps(tmp_path):
    """The nightly names its folders ``night-1`` and ``merged``: a verdict that changed since the last night
    shows as new, one that held shows since which run."""
    root = tmp_path / "reports"
    suite = tmp_path / "two_suite.py"
    suite.write_text(TWO_CASES)
    args = [str(suite), "--backends", "torch,ort-cpu", "--probes", "base", "--no-oracle"]
    first, second = root / "night-1", root / "merged"
    assert main(["run", *args, "--out", str(first)]) == 0
    comparisons = pl.read_parquet(first / "comparisons.parquet")
    changed = comparisons["case"][0]
    comparisons.with_columns(
        pl.when(pl.col("case") == changed).then(pl.lit("dtype")).otherwise(pl.col("label")).alias("label")
    ).write_parquet(first / "comparisons.parquet")
    assert main(["run", *args, "--out", str(second)]) == 0
    index = (second / "index.html").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr data-name="([^"]+)"(.*?)</tr>', index, flags=re.S)}
    assert rows, "the matrix has rows"
    changed = changed.lower()
    assert "this verdict is new in this run" in rows[changed]
    others = [case for case in rows if case != changed]
    assert others and all("since night-1" in rows[case] for case in others)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (.ci/run installs Debian's chromium)")
def test_charts_are_drawn_offline_in_a_real_browser(night, tmp_path):
    page = next((night / "cases").glob("models__resnet_basic-*.html"))
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
            "--window-size=1400,1000",
            "--virtual-time-budget=2000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="marks"') >= 4  # Vega drew histogram, scatter and heatmap from ../assets/


def test_signatures_take_out_every_runtime_familys_names():
    from types import SimpleNamespace

    from difftest.report.triage import _signature

    def outcome(evidence):
        return SimpleNamespace(label="mismatch", evidence=evidence)

    assert _signature(outcome("openvino differs from eager; onnx-ref agrees")) == _signature(
        outcome("openvino[precision=f32] differs from eager; onnx-ref agrees")
    )
    assert _signature(outcome("torch-compile[mode=reduce-overhead] differs")) == _signature(outcome("ort-cpu differs"))
