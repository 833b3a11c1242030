"""Thin command line over the Python API: parse, call, map errors to exit codes."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

from .errors import Interrupted, UsageError
from .exitcodes import ExitCode
from .backends import DEFAULT_BACKENDS
from .run_config import DEFAULT_TIMEOUT
from .worker.task import CONTROL_BUDGET, LOCALIZE_BUDGET

BACKENDS_HELP = (
    "comma-separated candidates, each a backend with optional settings: ort-cpu, "
    "ort-cpu[exporter=torchscript], ort-cpu[opt=disable], ort-cpu[threads=1], ort-cuda[tf32=0], "
    "ort-cpu[transform=fp16]; the reference (torch) is always run (default: "
    f"{','.join(DEFAULT_BACKENDS)}); also openvino[precision=f32], torch-compile[backend=aot_eager]"
)


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``run`` and the commands that read stored runs (list, compare, localize, merge, cache,
    report)."""
    parser = argparse.ArgumentParser(
        prog="difftest",
        description="Run PyTorch models through eager PyTorch and ONNX Runtime, classify every disagreement, "
        "and write tables and an HTML report.",
        epilog="exit codes: 0 nothing unexpected failed, 1 unexpected failing verdicts, 2 usage or "
        "configuration error (a full disk too), 3 internal error, 130 stopped by SIGINT/SIGTERM (finished cases kept)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_run(commands)
    _add_readers(commands)
    return parser


def _add_run(commands: Any) -> None:
    """``difftest run``: what to run, on which candidates, with which budgets, and bare ONNX inputs."""
    run = commands.add_parser("run", help="run cases and write a report")
    run.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="suite file, folder of suite files, file.py::case, an ONNX file or a folder of them, or an "
        "ONNX test folder (default: suites/)",
    )
    run.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), help=BACKENDS_HELP)
    run.add_argument("--out", help="run directory (default: reports/<timestamp>, linked as reports/latest)")
    run.add_argument("-k", dest="keyword", help="only cases whose id contains this substring")
    run.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per CPU core)")
    run.add_argument(
        "--exporter",
        choices=["dynamo", "torchscript"],
        help="exporter for every case (default: each case's own, else dynamo)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per case before it is killed (default {DEFAULT_TIMEOUT:g})",
    )
    run.add_argument(
        "--probes",
        help="comma-separated input probes: base,alt,ties,ramp,shape,special "
        "(default: all that apply to each case; special only where a case opts in)",
    )
    run.add_argument(
        "--reruns",
        type=int,
        default=1,
        help="extra runs per backend and probe, to measure run-to-run spread (default 1)",
    )
    run.add_argument("--no-oracle", action="store_true", help="do not run the float64 torch oracle")
    run.add_argument(
        "--baseline",
        metavar="DIR",
        help="a previous run: report failures as new or known, write compare.md/html, and exit 1 only on new failures",
    )
    run.add_argument(
        "--shard",
        metavar="K/N",
        help="run the K-th of N stable slices of the cases (merge the shard runs with `difftest merge`)",
    )
    run.add_argument("--durations", metavar="DIR", help="a previous run whose case durations balance --shard")
    run.add_argument(
        "--isolate",
        choices=["case", "spawn"],
        default="case",
        help="case: every case in a fresh process forked from a preloaded template (default); spawn: "
        "a fresh interpreter per case as well (slower: torch is imported for every case)",
    )
    _add_run_limits(run)
    _add_bare_onnx_inputs(run)


def _add_run_limits(run: Any) -> None:
    """What a run may spend and keep: localization and control budgets, waivers, the export cache, resuming,
    memory, and the candidates that must run."""
    run.add_argument(
        "--localize-budget",
        type=float,
        default=LOCALIZE_BUDGET,
        metavar="SECONDS",
        help="time per case to localize a failing candidate to its first divergent ONNX node "
        f"(default {LOCALIZE_BUDGET:g}; 0 turns it off)",
    )
    run.add_argument(
        "--control-budget",
        type=float,
        default=CONTROL_BUDGET,
        metavar="SECONDS",
        help="time per case for automatic controls on failing candidates (onnx-ref, opt=disable, the "
        f"export without the case's rewrite) that decide blame (default {CONTROL_BUDGET:g}; 0 turns them off)",
    )
    run.add_argument(
        "--expectations", metavar="FILE", help="waiver file (default: suites/expectations.toml when it exists)"
    )
    run.add_argument("--no-cache", action="store_true", help="export every case afresh (no export cache)")
    run.add_argument("--cache-dir", help="export cache folder (default: $DIFFTEST_CACHE_DIR or ~/.cache/difftest)")
    run.add_argument(
        "--resume", action="store_true", help="finish the run in --out: only the cases it has no result for are run"
    )
    run.add_argument(
        "--memory-limit",
        type=int,
        dest="memory_limit_mb",
        metavar="MB",
        help="address-space limit per worker process, in MiB",
    )
    run.add_argument(
        "--require",
        metavar="CANDIDATES",
        default="",
        help="comma-separated candidates that must run here (e.g. ort-cuda,torch-cuda on a GPU runner): "
        "one that cannot (no CUDA provider, a silent fallback to CPU) makes the run exit 2 with the reason",
    )


def _add_bare_onnx_inputs(run: Any) -> None:
    """How a bare ONNX file's inputs are made: sizes of symbolic dims, value ranges, or given data."""
    run.add_argument(
        "--input-shapes",
        action="append",
        default=[],
        metavar="NAME:DIMS",
        help="bare ONNX files: the size of an input's symbolic dims, e.g. pixels:1x3x224x224 (repeat per "
        "input; default 1 for each symbolic dim)",
    )
    run.add_argument(
        "--val-range",
        action="append",
        default=[],
        metavar="[NAME:][LO,HI]",
        help="bare ONNX files: the range generated input values are drawn from, e.g. ids:[0,30000] or "
        "[-1,1] for every input (default [0,1]; integers within it)",
    )
    run.add_argument(
        "--inputs",
        metavar="FILE",
        help="bare ONNX files: feed these inputs instead of generated ones: "
        "an .npz of arrays named after the graph's inputs, a folder of input_<i>.pb TensorProtos or of "
        "test_data_set_*/ folders",
    )


def _add_readers(commands: Any) -> None:
    """The commands that list cases or read stored runs."""
    listing = commands.add_parser("list", help="print the case ids the targets hold, one a line")
    listing.add_argument("targets", nargs="*", metavar="TARGET")
    listing.add_argument("-k", dest="keyword")

    compare = commands.add_parser("compare", help="what changed between two stored runs (exit 1 on new failures)")
    compare.add_argument("base", metavar="BASE_DIR")
    compare.add_argument("new", metavar="NEW_DIR")
    compare.add_argument("--out", help="where compare.md and compare.html go (default: NEW_DIR)")
    compare.add_argument("--growth", type=float, default=10.0, help="report errors that grew by this factor (10)")

    localize = commands.add_parser("localize", help="find the first divergent ONNX node of a failing case")
    localize.add_argument("target", metavar="FILE::CASE")
    localize.add_argument("--candidate", default="ort-cpu", help="the candidate to localize (default ort-cpu)")
    localize.add_argument(
        "--reference",
        default="torch",
        help="torch (eager, via the dynamo exporter's value names) or another runtime on the "
        "same graph, e.g. ort-cpu[opt=disable]",
    )
    localize.add_argument("--probe", default="base", help="the input probe to localize on (default base)")
    localize.add_argument("--out", help="folder for the repro bundle (default: none written)")
    localize.add_argument("--json", action="store_true", help="print one JSON object")

    merge = commands.add_parser("merge", help="merge shard runs into one run with one report")
    merge.add_argument("run_dirs", nargs="+", metavar="DIR")
    merge.add_argument("--out", required=True, help="the merged run directory (new)")
    merge.add_argument("--baseline", metavar="DIR", help="as for run: new versus known failures")

    cache = commands.add_parser("cache", help="show or clear the export cache")
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("--cache-dir", help="export cache folder (default: $DIFFTEST_CACHE_DIR or ~/.cache/difftest)")

    report = commands.add_parser("report", help="re-render the HTML report of a stored run (no model is run)")
    report.add_argument("run_dir", metavar="DIR")
    report.add_argument(
        "--rejudge",
        action="store_true",
        help="recompute the comparisons from the stored tensors with this version's classifier",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on --help
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return ExitCode.USAGE_ERROR
    try:
        return int(_dispatch(args))
    except UsageError as exc:
        print(f"difftest: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE_ERROR
    except Interrupted as exc:
        print(
            f"difftest: stopped by {exc.signal_name}; the finished cases are kept (finish with --resume)",
            file=sys.stderr,
        )
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `difftest list | head`: the reader left, nothing went wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except KeyboardInterrupt:
        print("difftest: interrupted; finished cases are kept in the run directory", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:
        from .errors import disk_full

        if disk_full(exc):  # an OSError, or polars' ComputeError wrapping ENOSPC
            where = getattr(exc, "filename", None) or "while writing"
            print(
                f"difftest: error: the disk is full ({where}): free some space, then finish the run with --resume "
                "(the cases that finished are kept)",
                file=sys.stderr,
            )
            return ExitCode.USAGE_ERROR
        traceback.print_exc()
        print(
            "difftest: internal error (a bug in difftest, please report it with the traceback above)", file=sys.stderr
        )
        return ExitCode.INTERNAL_ERROR


def _dispatch(args: argparse.Namespace) -> ExitCode:
    if args.command == "list":
        from .suite.discover import collect

        for ref, _ in collect(args.targets or ["suites"], args.keyword):
            print(ref.id)
        return ExitCode.OK
    if args.command == "report":
        return _report(Path(args.run_dir), args.rejudge)
    if args.command == "cache":
        return _cache(args.action, args.cache_dir)
    if args.command == "localize":
        return _localize(args)
    if args.command == "merge":
        return _merge([Path(d) for d in args.run_dirs], Path(args.out), args.baseline)
    if args.command == "compare":
        return _compare(Path(args.base), Path(args.new), Path(args.out) if args.out else None, args.growth)
    return _run(args)


def _run(args: argparse.Namespace) -> ExitCode:
    """``difftest run``: the options as :func:`difftest.run` takes them, progress printed as it goes."""
    from .api import run
    from .backends.candidates import parse_list, split_specs
    from .suite.probes import parse_probes

    try:
        probes = parse_probes(args.probes)
    except ValueError as exc:
        raise UsageError(f"--probes: {exc}") from None
    result = run(
        args.targets or ["suites"],
        echo=print,
        backends=split_specs(args.backends),
        out=args.out,
        keyword=args.keyword,
        jobs=args.jobs,
        exporter=args.exporter,
        timeout=args.timeout,
        memory_limit_mb=args.memory_limit_mb,
        resume=args.resume,
        probes=probes,
        reruns=args.reruns,
        oracle=not args.no_oracle,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        expectations=args.expectations,
        baseline=args.baseline,
        shard=args.shard,
        durations=args.durations,
        localize_budget=args.localize_budget,
        control_budget=args.control_budget,
        isolate=args.isolate,
        require=[c.name for c in parse_list(args.require)] if args.require else [],
        onnx_inputs=onnx_inputs(args.input_shapes, args.val_range, args.inputs),
    )
    print()
    print(result.summary())
    return result.exit_code


def onnx_inputs(shapes: list[str], ranges: list[str], data: str | None) -> dict:
    """``--input-shapes``, ``--val-range`` and ``--inputs`` as a run's ``onnx_inputs``; a malformed one is a usage
    error naming it and the form expected."""
    import re

    found: dict = {"shapes": {}, "ranges": {}, "data": data}
    for text in shapes:
        name, sep, dims = text.rpartition(":")
        numbers = re.split(r"[x,]", dims.strip().strip("[]")) if dims.strip().strip("[]") else []
        if not sep or not name or not all(n.strip().isdigit() for n in numbers):
            raise UsageError(
                f"--input-shapes {text!r}: expected NAME:DIMS, e.g. pixels:1x3x224x224 or pixels:[1,3,224,224]"
            )
        found["shapes"][name] = [int(n) for n in numbers]
    for text in ranges:
        match = re.fullmatch(r"(?:(?P<name>[^:\[]+):)?\[?\s*(?P<lo>[-+.\deE]+)\s*,\s*(?P<hi>[-+.\deE]+)\s*\]?", text)
        try:
            low, high = float(match["lo"]), float(match["hi"])  # type: ignore[index]
        except (TypeError, ValueError):
            raise UsageError(f"--val-range {text!r}: expected [NAME:][LO,HI], e.g. ids:[0,30000] or [-1,1]") from None
        if low > high:
            raise UsageError(f"--val-range {text!r}: the low end is above the high end")
        found["ranges"][match["name"] or "*"] = [low, high]  # type: ignore[index]
    return found if (found["shapes"] or found["ranges"] or data) else {}


def _localize(args: argparse.Namespace) -> ExitCode:
    import logging

    from .backends.candidates import parse
    from .localize.divergence import localize
    from .suite.discover import collect

    if "::" not in args.target:
        raise UsageError(f"localize needs one case, FILE::CASE (got {args.target!r})")
    ((ref, _),) = collect([args.target])
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" and the like
    parse(args.candidate)
    if args.reference not in ("torch", "eager"):
        parse(args.reference)
    result = localize(ref, args.candidate, args.reference, args.probe, Path(args.out) if args.out else None)
    if args.json:
        print(result.to_json())
    else:
        print(format_localization(result))
    from .judge.vocabulary import LOCALIZED

    return ExitCode.OK if result.status in LOCALIZED else ExitCode.FAILURES


def format_localization(result) -> str:
    lines = [f"{result.status}: {result.reason} ({result.seconds:.1f} s)"]
    if result.culprit:
        c = result.culprit
        lines.append(f"culprit: {c['name']} ({c['op_type']}) {c['attributes'] or ''}")
        lines.append(f"  inputs {[(i['name'], i['shape']) for i in c['inputs']]}")
        lines.append(f"  outputs {[(o['name'], o['shape']) for o in c['outputs']]}")
        if c.get("module") or c.get("source"):
            lines.append(f"  PyTorch: module {c.get('module') or '?'} at {c.get('source') or '?'}")
        for i, s in enumerate(result.suspects[1:5], 2):
            lines.append(f"suspect {i}: {s['name']} ({s['op_type']}), relative error {s['relative_error']:.3g}")
    if result.reproduced is not None:
        lines.append(
            "reproduced alone: "
            + ("yes" if result.reproduced else "no (the error needs more context)")
            + (f", bundle {result.repro}" if result.repro else "")
        )
    if result.optimizer:
        lines.append(f"ORT optimizer: {result.optimizer}")
    return "\n".join(lines)


def _merge(run_dirs: list[Path], out: Path, baseline: str | None) -> ExitCode:
    from .api import Run
    from .nightly.shards import check_run_dir, merge
    from .runner import finish

    merged = merge([check_run_dir(d) for d in run_dirs], out)
    run = Run(finish(merged, rejudge=True, baseline=Path(baseline) if baseline else None))
    print(run.summary())
    from .nightly.shards import incomplete

    lacking = incomplete(merged)
    if lacking:  # the merged run is not the whole suite: it fails, whatever a baseline says
        print(f"difftest merge: INCOMPLETE: {lacking}")
        return max(run.exit_code, ExitCode.FAILURES)
    return run.exit_code


def _compare(base: Path, new: Path, out: Path | None, growth: float) -> ExitCode:
    from .errors import RunDataError
    from .nightly.changes import as_table, compare_runs, new_failures, write

    for folder in (base, new):
        if not folder.is_dir():
            raise RunDataError(f"{folder}: no such run directory")
    changes = compare_runs(base, new, growth)
    print(as_table(changes))
    markdown, html = write(changes, base, new, out or new)
    print(f"written: {markdown} and {html}")
    return ExitCode.FAILURES if new_failures(changes) else ExitCode.OK


def _cache(action: str, folder: str | None) -> ExitCode:
    from .export.cache import ExportCache

    cache = ExportCache(folder)
    if action == "clear":
        print(f"removed {cache.clear()} cached export(s) from {cache.root}")
    else:
        info = cache.info()
        print(
            f"{info['root']}: {info['entries']} export(s), {info['bytes'] / 2**20:.1f} MiB "
            f"(bound {info['max_bytes'] / 2**30:.1f} GiB, least recently used removed first)"
        )
    return ExitCode.OK


def _report(run_dir: Path, rejudge: bool) -> ExitCode:
    from .errors import RunDataError
    from .runner import finish

    if not run_dir.is_dir():
        raise RunDataError(f"{run_dir}: no such run directory")
    from .api import Run

    result = finish(run_dir, rejudge=rejudge)
    print(Run(result).summary())  # the summary the run printed (it ends with the report's path)
    return result.exit_code
