"""The labelled classifier corpus (bench/classify_corpus.py) as a test: every case must get its true label."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_classifier_corpus_is_labelled_correctly(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import classify_bench
    finally:
        sys.path.pop(0)
    code = classify_bench.main(["--out", str(tmp_path / "corpus")])
    out = capsys.readouterr().out
    assert "false alarms on benign cases: 0/" in out, out
    assert code == 0, out
