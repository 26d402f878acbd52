"""`unlearn run`: run a benchmark grid and print its table."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unlearn.cli.options import (
    FORGET_FORMS,
    add_benchmark,
    add_runtime_options,
    csv_list,
    hparam_assignment,
    seed_list,
    slurm_option,
)
from unlearn.cli.runtime import overlaid, runtime
from unlearn.collapse import collapse

RUN_EPILOG = FORGET_FORMS + """

methods (--methods, comma-separated): a name from `unlearn methods`, a plugin
registered in the `unlearn.methods` entry-point group, or `package.module:Class`.

Hyperparameters: each method starts from its reference defaults, the benchmark's
tuned values (the `hparams:` section of its spec) override them, the workdir's overlay
hparams/<benchmark>.yaml (or --hparams-file; `unlearn tune` writes it for plugin
methods) overrides those, and --hparam METHOD.NAME=VALUE overrides all, e.g.
--hparam finetune.lr=0.05. Records hold the values used.

Outputs (under --workdir, default the current directory):
  data/runs/<benchmark>/<forget>/<method>/seed<S>-<hash>.json   one record per cell
  data/cache/                       original models and oracles (safetensors), reused
  data/forget-sets/<dataset>/       forget-set index manifests, reused (or copied from those shipped)
A rerun skips every cell whose record exists (use --retry-failed to rerun failed ones).

Executors: --executor process --jobs N runs the (forget set, seed) groups in N local worker
processes, --executor ray [--address HOST:PORT] as Ray tasks (pip install -e ".[ray]"), and
--executor slurm [--slurm KEY=VALUE ...] as SLURM jobs through submitit (pip install -e
".[slurm]"; the workdir must be on a shared file system). The records and numbers are those of
a serial run; a worker that dies fails only the cell it ran.

Exit codes: 0 success (failed cells are recorded and reported), 2 bad input.
"""


def add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run a grid of methods × forget sets × seeds and print the table",
        description="Run a benchmark grid (default: the benchmark's own grid) and print each metric's mean ± 95 % CI "
                    "half-width over seeds, with ranks from paired tests over seeds.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_benchmark(run)
    run.add_argument("--methods", type=csv_list, help="comma-separated methods (default: the benchmark's grid)")
    run.add_argument("--forget", type=csv_list, help="comma-separated forget specs, e.g. random:0.1,class:3")
    run.add_argument("--seeds", type=seed_list, help="comma-separated seeds, e.g. 0,1,2")
    run.add_argument("--hparam", type=hparam_assignment, action="append", default=[], metavar="METHOD.NAME=VALUE",
                     help="override one hyperparameter (repeatable)")
    run.add_argument("--hparams-file", type=Path, metavar="PATH",
                     help="tuned values merged over the spec's `hparams:` (default: WORKDIR/hparams/BENCHMARK.yaml "
                     "when it exists, where `unlearn tune` writes a plugin method's choice)")
    run.add_argument("--results-dir", type=Path, help="where records go (default: WORKDIR/data/runs)")
    run.add_argument("--retry-failed", action="store_true", help="rerun cells whose record says failed")
    run.add_argument("--executor", default="serial", metavar="NAME",
                     help="serial (default: one cell after another here), process (a pool of --jobs local worker "
                     "processes), ray (Ray tasks, on a local instance or on the cluster at --address) or slurm "
                     "(SLURM jobs through submitit, options from --slurm)")
    run.add_argument("--jobs", type=int, metavar="N",
                     help="process: worker processes; ray: CPUs of the local instance (default: the CPUs available); "
                     "slurm: jobs queued at a time (default: all)")
    run.add_argument("--address", metavar="HOST:PORT",
                     help="ray: the cluster to run on (`ray start --head` prints it); default: a local instance")
    run.add_argument("--slurm", type=slurm_option, action="append", default=[], metavar="KEY=VALUE",
                     help="slurm: a submitit job parameter (repeatable), e.g. slurm_partition=gpu, timeout_min=600, "
                     "mem_gb=16, slurm_account=lab; cluster=local runs the jobs as local processes")
    add_runtime_options(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from unlearn.executors import make_executor
    from unlearn.harness import Grid, load_kind, plan_grid
    from unlearn.leaderboard import AVG_GAP, ROBUST_GAP, RUN_TIME, format_text, summarize
    from unlearn.leaderboard.tables import forget_set_keys
    from unlearn.spec import load_benchmark

    executor = make_executor(args.executor, args.jobs, args.address, dict(args.slurm))
    spec = overlaid(args, load_benchmark(args.benchmark))
    plan = plan_grid(spec, args.methods, args.forget, args.seeds, _hparam_overrides(args.hparam))
    device, workspace, progress = runtime(args, spec)
    kind = load_kind(spec, workspace, device)
    kind.check(plan.forgets, plan.methods)

    log = None if progress else (lambda msg: print(msg, file=sys.stderr, flush=True))
    print(f"unlearn: {spec.name}: {plan.size} cells on {device}, {executor.describe()}; records in "
          f"{workspace.results_dir}", file=sys.stderr)
    grid = Grid(plan, kind, workspace, progress=progress, log=log, retry_failed=args.retry_failed)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the table alone (Ray prints a worker's death there)
        result = grid.run(executor)

    own = dict.fromkeys(k for forget in plan.forgets for k in forget_set_keys(forget.text))  # corrective: ASR
    print(format_text(summarize(result.records, [*spec.gap_metrics, AVG_GAP, ROBUST_GAP, *own, RUN_TIME])))
    failed = [r for r in result.records if r.status == "failed"]
    if result.ran and executor.name != "serial":
        print(f"unlearn: {executor.name}: {executor.stats.summary()}", file=sys.stderr)
    print(f"unlearn: {result.ran} cells run, {result.reused} reused, {len(failed)} failed", file=sys.stderr)
    for r in failed:
        print(f"unlearn: failed: {r.method} · {r.forget.spec} · seed {r.seed}: {r.error}", file=sys.stderr)
    for r in result.records:
        if r.is_collapsed:
            print(f"unlearn: collapsed: {r.method} · {r.forget.spec} · seed {r.seed}: "
                  f"{collapse(r.metrics, r.original_metrics)}", file=sys.stderr)
    return 0


def _hparam_overrides(items: Sequence[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    """--hparam values as scalars (numbers, booleans, null, strings): no YAML collections, aliases or tags."""
    from unlearn.yaml_input import parse_scalar

    out: dict[str, dict[str, Any]] = {}
    for method, name, value in items:
        out.setdefault(method, {})[name] = parse_scalar(value, f"--hparam {method}.{name}")
    return out


PARSERS = (add_run,)
