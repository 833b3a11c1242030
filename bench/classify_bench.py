"""Score the classifier on the labelled corpus: a confusion matrix and per-label precision and recall.

    python bench/classify_bench.py [--corpus FILE] [--out DIR] [--rejudge DIR]

Runs a labelled corpus (default bench/classify_corpus.py; bench/public_corpus.py is the one built from public
bug reports) through torch and ort-cpu (or re-judges a stored run), takes each case's declared ``expect`` as
the truth, and the worst label per case × candidate as the prediction.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--corpus",
        default=str(HERE / "classify_corpus.py"),
        help="the labelled suite file to run (default: bench/classify_corpus.py)",
    )
    parser.add_argument("--out", help="run directory (default: a temporary one)")
    parser.add_argument("--rejudge", metavar="DIR", help="re-judge a stored corpus run instead of running it")
    args = parser.parse_args(argv)

    from difftest.judge.expectations import outcomes
    from difftest.runner import RunConfig, finish, run
    from difftest.record.tables import read_table, row_dicts

    if args.rejudge:
        run_dir = Path(args.rejudge)
        finish(run_dir, rejudge=True)
    else:
        out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="difftest-corpus-")) / "run"
        corpus = Path(args.corpus)
        if not corpus.exists() and (HERE / corpus.name).exists():
            corpus = HERE / corpus.name  # a bare file name means one of the corpora beside this script
        if not corpus.is_file():
            parser.error(f"--corpus: no such file: {args.corpus}")
        run(
            RunConfig(targets=[str(corpus.resolve())], backends=["torch", "ort-cpu"], out=str(out)),
            echo=lambda line: None,
        )
        run_dir = out
    cases = row_dicts(read_table(run_dir, "cases"), "cases")
    results = outcomes(cases, read_table(run_dir, "comparisons").to_dicts())
    pairs = []
    for o in results:
        truth_options = o.expected or ["(none)"]
        truth = o.label if o.label in truth_options else truth_options[0]
        pairs.append((o.case, truth, o.label, o.evidence))
    print(report(pairs))
    print(f"\nrun: {run_dir}")
    return 0 if all(t == p for _, t, p, _ in pairs) else 1


def report(pairs: list[tuple[str, str, str, str]]) -> str:
    labels = sorted({t for _, t, _, _ in pairs} | {p for _, _, p, _ in pairs})
    matrix = Counter((t, p) for _, t, p, _ in pairs)
    width = max(len(label) for label in labels) + 2
    lines = [
        "confusion matrix (rows: true label, columns: predicted)",
        " " * width + "".join(f"{label[:9]:>10}" for label in labels),
    ]
    for t in labels:
        lines.append(f"{t:<{width}}" + "".join(f"{matrix.get((t, p), 0) or '.':>10}" for p in labels))
    lines.append("")
    lines.append(f"{'label':<{width}}{'precision':>10}{'recall':>10}{'support':>10}")
    for label in labels:
        tp = matrix.get((label, label), 0)
        predicted = sum(v for (t, p), v in matrix.items() if p == label)
        actual = sum(v for (t, p), v in matrix.items() if t == label)
        precision = f"{tp / predicted:.2f}" if predicted else "-"
        recall = f"{tp / actual:.2f}" if actual else "-"
        lines.append(f"{label:<{width}}{precision:>10}{recall:>10}{actual:>10}")
    correct = sum(t == p for _, t, p, _ in pairs)
    benign = [(t, p) for _, t, p, _ in pairs if t in ("exact", "numeric", "tie_break", "dtype", "nondeterministic")]
    false_alarms = sum(1 for t, p in benign if p not in ("exact", "numeric", "tie_break", "dtype", "nondeterministic"))
    lines.append("")
    lines.append(f"accuracy {correct}/{len(pairs)}; false alarms on benign cases: {false_alarms}/{len(benign)}")
    wrong = [(c, t, p, e) for c, t, p, e in pairs if t != p]
    if wrong:
        lines.append("misclassified:")
        for c, t, p, e in wrong:
            lines.append(f"  {c}: true {t}, predicted {p}: {e[:300]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
