import os
import tempfile
from pathlib import Path

import pytest

# Tests never share the user's export cache (~/.cache/difftest): one fresh cache per test session, inherited by
# the worker processes the runs spawn.
os.environ["DIFFTEST_CACHE_DIR"] = tempfile.mkdtemp(prefix="difftest-test-cache-")

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One real run of tests/data/tiny_suite.py, shared by the tests that read its tables and report."""
    from difftest.cli import main

    out = tmp_path_factory.mktemp("run") / "tiny"
    code = main(
        ["run", str(DATA / "tiny_suite.py"), "--backends", "torch,ort-cpu,ort-cuda", "--out", str(out), "--jobs", "2"]
    )
    return code, out
