"""`unlearn tune`: choose a method's hyperparameters by the validation gap to the oracle."""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

from unlearn.cli.options import add_benchmark, add_runtime_options, csv_list, print_table, seed_list
from unlearn.cli.runtime import overlaid, runtime

TUNE_EPILOG = """\
Each trial is a normal grid run (records under data/tune/, reused on a rerun); a trial
with any failed cell (e.g. a diverged run) is out. Ties go to the earlier trial. The
trials and the choice are saved in data/tune/<benchmark>/tuning/<method>.json.

Where the choice goes: a built-in method's into the spec's `hparams:` entry for it (only
that line changes). A method that is not built in (a plugin's entry point, or
package.module:Class) never writes into the spec unless --write-spec is given: its choice
goes to an overlay file you own, WORKDIR/hparams/<benchmark>.yaml (or --hparams-file
PATH), which `unlearn run` with the same --workdir (or --hparams-file) merges over the
spec's `hparams:`. The file written is printed.

Exit codes: 0 chosen (and written unless --no-write), 2 bad input or every trial failed.
"""


def add_tune(sub: Any) -> None:
    tune = sub.add_parser(
        "tune",
        help="choose a method's learning rate and key knobs by the validation gap to the oracle",
        description=textwrap.fill(
            "Search a small grid of one method's hyperparameters (its learning rate and one or two key knobs; "
            "`unlearn methods NAME` lists them) on the given forget sets and seeds, and write the values with the "
            "smallest mean gap to the oracle into the benchmark spec's `hparams:` section (a plugin method's into an "
            "overlay file; see below), where every later run and every forget set picks them up. The gap uses the "
            "benchmark's gap metrics with each test-set metric "
            "replaced by its validation twin (TA -> VA, MIA-Efficacy -> MIA-Efficacy-val, which uses validation "
            "images as the attack's non-members): the test set is never used to choose.", 88),
        epilog=TUNE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("--method", required=True, help="the method to tune")
    add_benchmark(tune)
    tune.add_argument("--forget", type=csv_list, default=["random:0.1"],
                      help="comma-separated forget specs to tune on (default: random:0.1); the mean over them counts")
    tune.add_argument("--seeds", type=seed_list, help="comma-separated seeds (default: the benchmark's grid seeds)")
    tune.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                      help="search these values for NAME instead of the method's own grid (repeatable)")
    where = tune.add_mutually_exclusive_group()
    where.add_argument("--no-write", action="store_true", help="report the choice, write no spec or overlay")
    where.add_argument("--write-spec", action="store_true",
                       help="write the choice into the spec file even for a method that is not built in")
    where.add_argument("--hparams-file", type=Path, metavar="PATH",
                       help="the overlay file to read tuned values from and write the choice to (default: "
                       "WORKDIR/hparams/BENCHMARK.yaml, read when it exists, written for a method that is not built in)")
    tune.add_argument("--results-dir", type=Path, help="where trial records go (default: WORKDIR/data/tune)")
    add_runtime_options(tune)
    tune.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:

    from unlearn import tune as tuning
    from unlearn.harness import Grid, load_kind, plan_grid
    from unlearn.methods import METHODS
    from unlearn.overlay import overlay_path
    from unlearn.progress import progress_bar
    from unlearn.spec import find_spec, read_spec

    spec_path = find_spec(args.benchmark)
    given_file = args.hparams_file
    if given_file is not None and not given_file.is_file():  # the overlay to create: nothing to read from it yet
        spec = read_spec(spec_path)
    else:
        spec = overlaid(args, read_spec(spec_path))
    trials = tuning.search_grid(args.method, tuning.parse_grid(args.grid))
    seeds = args.seeds if args.seeds is not None else spec.grid.seeds
    trial_spec = tuning.tuning_spec(spec)
    plans = [plan_grid(trial_spec, [args.method], args.forget, seeds, {args.method: values}) for values in trials]
    if args.results_dir is None:
        args.results_dir = args.workdir / "data/tune"
    device, workspace, progress = runtime(args, spec)
    kind = load_kind(spec, workspace, device)
    for plan in plans:
        kind.check(plan.forgets, plan.methods)
    print(f"unlearn: tuning {args.method} on {spec.name}: {len(trials)} trials x {plans[0].size} cells on {device}",
          file=sys.stderr)
    bar = progress_bar(total=len(trials), desc=f"tune {args.method}", unit="trial", disable=not progress)

    def run_trial(values: dict[str, Any]) -> list[Any]:
        records = Grid(plans[trials.index(values)], kind, workspace).run().records
        bar.update(1)
        return records

    def show(trial: Any) -> None:
        gap = "failed" if trial.gap is None else f"{trial.gap:.2f}"
        print(f"unlearn: {tuning.trial_label(trial.values)}: validation gap {gap}", file=sys.stderr)

    result = tuning.tune(spec, args.method, args.forget, seeds, trials, run_trial, on_trial=show)
    bar.close()
    report = tuning.write_report(result, workspace.results_dir)
    _print_trials(result, tuning.trial_label)
    print(f"unlearn: chose {tuning.trial_label(result.best.values)} (gap metrics {', '.join(result.metrics)}); "
          f"trials in {report}", file=sys.stderr)
    if args.no_write:
        print(f"unlearn: --no-write: {spec_path} unchanged", file=sys.stderr)
    elif args.write_spec or (given_file is None and METHODS.origin(args.method) == "builtin"):
        tuning.write_to_spec(spec_path, result)
        print(f"unlearn: wrote hparams.{args.method} to {spec_path}", file=sys.stderr)
    else:
        overlay = given_file or overlay_path(args.workdir, spec.name)
        tuning.write_to_overlay(overlay, spec, result)
        print(f"unlearn: wrote hparams.{args.method} to {overlay}, merged over {spec_path} by `unlearn run` with this "
              "workdir or --hparams-file (the spec is unchanged; --write-spec writes there)", file=sys.stderr)
    return 0


def _print_trials(result: Any, label: Any) -> None:
    """One line per trial, best gap first: the gap on each forget set and the mean; the chosen one marked *."""
    forgets = list(result.best.gap_by_forget)
    rows = [["trial", *forgets, "mean", ""]]
    for trial in sorted(result.trials, key=lambda t: math.inf if t.gap is None else t.gap):
        gaps = [f"{trial.gap_by_forget[f]:.2f}" if f in trial.gap_by_forget else "failed" for f in forgets]
        mean = "failed" if trial.gap is None else f"{trial.gap:.2f}"
        rows.append([label(trial.values), *gaps, mean, " *" if trial is result.best else ""])
    # long forget specs (corrective, worst-case) stay apart
    print_table(rows, [-40, *(max(14, len(f) + 2) for f in forgets), 10, None])


PARSERS = (add_tune,)
