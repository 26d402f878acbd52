"""The leaderboard's commands: `unlearn submit`, `unlearn leaderboard` and `unlearn reproduce`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from unlearn.cli.options import add_benchmark, add_progress_options, csv_list, thread_count
from unlearn.errors import UserError

REPRODUCE_EPILOG = """\
Exact equality is expected on CPU with the records' package versions (pip install -e ".[dev]"
-c constraints.txt) and thread count; elsewhere (a GPU, other versions) pass --tolerance, and the
output says which tolerance it used. A draw is the same for the same records and --pick-seed.

Exit codes: 0 every cell reproduced, 1 a cell differs or was made under an older spec, 2 bad input.
"""


def add_submit(sub: Any) -> None:
    submit = sub.add_parser(
        "submit",
        help="validate a method's records and copy them into leaderboard/results",
        description="Check the records of the given methods (default: every method with records) and copy them "
        "into the leaderboard with a provenance block, replacing the methods' earlier leaderboard records. "
        "Refused, with what is missing, unless every method has exactly one finished record per cell of the "
        "benchmark's grid (its forget sets x seeds), made under the current spec with one hyperparameter "
        "configuration and recorded versions, and scored against the same oracle as the leaderboard's "
        "retrain records.",
    )
    add_benchmark(submit)
    submit.add_argument("--methods", type=csv_list, help="comma-separated methods to submit (default: all found)")
    submit.add_argument("--results-dir", type=Path, default=Path("data/runs"),
                        help="where `unlearn run` wrote the records (default: ./data/runs)")
    submit.add_argument("--leaderboard", type=Path, default=Path("leaderboard"),
                        help="leaderboard directory (default: ./leaderboard)")
    submit.add_argument("--submitter", help="name recorded in the provenance block (default: git user.name)")
    submit.add_argument("--allow-failed", action="store_true", help="submit failed cells as results")
    submit.add_argument("--dry-run", action="store_true", help="run every check, write nothing")
    submit.add_argument("--strict", action="store_true",
                        help="refuse records made with other package versions than the leaderboard's records of the "
                        "benchmark (default: warn and name them)")
    submit.set_defaults(handler=cmd_submit)


def cmd_submit(args: argparse.Namespace) -> int:
    from unlearn.atomic import ensure_writable
    from unlearn.spec import load_benchmark
    from unlearn.submit import submit

    spec = load_benchmark(args.benchmark)
    if not args.dry_run:
        ensure_writable(args.leaderboard / "results", "leaderboard results directory")
    report = submit(spec, args.results_dir, args.leaderboard / "results", args.methods,
                    submitted_by=args.submitter, allow_failed=args.allow_failed, dry_run=args.dry_run,
                    strict=args.strict)
    for note in report.notes:
        print(f"unlearn: note: {note}", file=sys.stderr)
    for warning in report.warnings:
        print(f"unlearn: warning: {warning}", file=sys.stderr)
    verb = "would copy" if args.dry_run else "copied"
    print(
        f"unlearn: {verb} {len(report.written)} records of {', '.join(report.methods)} to {args.leaderboard}/results"
        f" ({len(report.removed)} earlier records {'would be ' if args.dry_run else ''}replaced)",
        file=sys.stderr,
    )
    if not args.dry_run:
        print("unlearn: now regenerate the tables with `unlearn leaderboard`", file=sys.stderr)
    return 0


def add_leaderboard(sub: Any) -> None:
    board = sub.add_parser(
        "leaderboard",
        help="regenerate leaderboard/README.md, leaderboard.csv, index.html and plots from the records",
        description="Regenerate the leaderboard from the result records under DIR/results. Invalid records, "
        "duplicate cells, conflicting configurations and records scored against another oracle are reported "
        "and skipped. The same records always give the same files.",
    )
    board.add_argument("--dir", type=Path, default=Path("leaderboard"), help="leaderboard directory (default: ./leaderboard)")
    board.add_argument("--results", type=Path, help="records to read (default: DIR/results)")
    board.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if the files are not what the records give (for CI)")
    board.set_defaults(handler=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from unlearn.leaderboard.build import regenerate, stale_outputs

    results = args.results if args.results is not None else args.dir / "results"
    if not results.is_dir():
        raise UserError(f"no records directory {results} (run from the repository root, or pass --dir / --results)")
    if args.check:
        stale = stale_outputs(args.dir, args.results)
        if stale:
            print(f"unlearn: {args.dir} is out of date: {', '.join(stale)}; run `unlearn leaderboard`", file=sys.stderr)
            return 1
        print(f"unlearn: {args.dir} is up to date", file=sys.stderr)
        return 0
    from unlearn.atomic import ensure_writable

    ensure_writable(args.dir, "leaderboard directory")
    build = regenerate(args.dir, args.results)
    for skipped in build.collection.skipped:
        print(f"unlearn: skipped {results.parent / skipped.path}: {skipped.reason}", file=sys.stderr)
    print(
        f"unlearn: wrote {len(build.outputs)} files to {args.dir} from {len(build.collection.records)} records"
        f" ({len(build.collection.skipped)} skipped)",
        file=sys.stderr,
    )
    return 0


def add_reproduce(sub: Any) -> None:
    repro = sub.add_parser(
        "reproduce", help="rerun committed leaderboard cells from scratch and compare every number with the records",
        description="Rerun K committed cells, drawn at random (--pick-seed) or named (--cell), each cold in a fresh "
        "temporary workdir: forget set, original model, oracle, method and metrics. First print how this environment "
        "differs from the records' (versions, cpu threads, device, commit); then one line per cell: reproduced, "
        "differs (with the numbers that moved) or spec changed (the spec now gives the cell another config hash, so "
        "it is not rerun). Every metric, gap, oracle and original metric is compared; run times and timing metrics "
        "(Samples/s) are not.", epilog=REPRODUCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_benchmark(repro, "pick from these benchmarks' records only (names or spec files; repeatable; default: all)",
                  many=True)
    repro.add_argument("--cells", type=int, default=3, metavar="K", help="how many cells to draw (default: 3)")
    repro.add_argument("--pick-seed", type=int, default=0, metavar="S", help="seed of the draw (default: 0)")
    repro.add_argument("--cell", type=Path, action="append", default=[], metavar="PATH",
                       help="rerun this record instead of drawing (repeatable; a path, or a path under --results-dir)")
    repro.add_argument("--tolerance", type=float, default=0.0, metavar="T",
                       help="absolute tolerance in metric points (default: 0, exact equality)")
    repro.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"),
                       help="the committed records (default: ./leaderboard/results); only read")
    repro.add_argument("--device", help="device to rerun on (default: the device each record names)")
    repro.add_argument("--threads", type=thread_count, metavar="N", help="CPU threads (default: each record's)")
    repro.add_argument("--workdir", type=Path, help="where the cold reruns happen (default: a temporary directory)")
    repro.add_argument("--data-root", type=Path, help="dataset files for torchvision datasets (default: ./data/datasets)")
    repro.add_argument("--download", action="store_true", help="allow downloading a missing torchvision dataset")
    repro.add_argument("--verbose", action="store_true", help="list every differing number (default: the first 8)")
    add_progress_options(repro)
    repro.set_defaults(handler=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from unlearn.reproduce import command

    return command(args)


PARSERS = (add_submit, add_leaderboard, add_reproduce)
