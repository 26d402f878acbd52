"""The `unlearn` command: run a benchmark grid, list methods and benchmarks.

Each module here holds one family of subcommands, every parser beside its handler; options.py holds what they
share (argument types, option groups, --benchmark, the table printer). Heavy imports (torch and the harness) happen
inside the handlers, so `unlearn --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import unlearn  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from unlearn.cli import board, cells, forget_sets, listings, run, tune
from unlearn.cli.options import Parser
from unlearn.errors import UserError

DESCRIPTION = """\
unlearn: an open machine-unlearning benchmark suite.

  unlearn run                      run the default digits benchmark and print its table
  unlearn run --methods retrain,finetune --forget class:3 --seeds 0,1,2
  unlearn evaluate --forget class:3 --checkpoint m.safetensors
                                   score a model unlearned elsewhere against the cell's oracle
  unlearn mask --forget class:3 --out m.safetensors
                                   save SalUn's saliency mask for a cell and show where it falls
  unlearn forget-set build worst-case --fraction 0.1 --seeds 0,1,2
                                   select the worst-case 10 % forget sets (bi-level) and store their manifests
  unlearn tune --method salun --forget random:0.1,class:3
                                   choose a method's lr and key knobs on validation data; write them into the spec
  unlearn submit --methods M       check M's records (complete grid, same oracle); copy them to leaderboard/
  unlearn leaderboard              regenerate leaderboard/ (tables, CSV, HTML, plots) from its records
  unlearn reproduce --cells 3      rerun 3 random committed cells from scratch; exit 1 unless they give their numbers
  unlearn methods                  list unlearning methods
  unlearn benchmarks               list benchmarks
"""

# The command families, in the order `unlearn --help` lists their commands; each module's PARSERS adds its own.
COMMAND_MODULES = (run, cells, tune, board, forget_sets, listings)


def build_parser() -> argparse.ArgumentParser:
    """The `unlearn` parser with every subcommand; each sets `handler`, the function that runs it."""
    parser = Parser(prog="unlearn", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMAND_MODULES:
        for add_parser in module.PARSERS:
            add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `unlearn` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed in one line
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"unlearn: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = None  # type: ignore[assignment]  (no flush error at exit)
        return 0
    except KeyboardInterrupt:
        print("unlearn: interrupted; finished cells are saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
