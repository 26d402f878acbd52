"""The `unlearn` command: run a benchmark grid, list methods and benchmarks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import unlearn  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from unlearn.errors import UserError

DESCRIPTION = """\
unlearn: an open machine-unlearning benchmark suite.

  unlearn run                      run the default digits benchmark and print its table
  unlearn run --methods retrain,finetune --forget class:3 --seeds 0,1,2
  unlearn methods                  list unlearning methods
  unlearn benchmarks               list benchmarks
"""

RUN_EPILOG = """\
forget sets (--forget, comma-separated):
  random:F     a uniform random fraction F of the training set, 0 < F < 1 (drawn per seed)
  class:C      every training sample of class C (TA then covers the other classes)

methods (--methods, comma-separated): a name from `unlearn methods`, a plugin
registered in the `unlearn.methods` entry-point group, or `package.module:Class`.

Hyperparameters: each method starts from its reference defaults, the benchmark's
tuned values (the `hparams:` section of its spec) override them, and
--hparam METHOD.NAME=VALUE overrides both, e.g. --hparam finetune.lr=0.05.

Outputs (under --workdir, default the current directory):
  data/runs/<benchmark>/<forget>/<method>/seed<S>-<hash>.json   one record per cell
  data/cache/                       original models and oracles (safetensors), reused
  data/forget-sets/<dataset>/       forget-set index manifests, reused
A rerun skips every cell whose record exists (use --retry-failed to rerun failed ones).

Exit codes: 0 success (failed cells are recorded and reported), 2 bad input.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one `--help` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}")
    return items


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got {text!r}") from None


def _hparam(text: str) -> tuple[str, str, str]:
    target, eq, value = text.partition("=")
    method, dot, name = target.rpartition(".")
    if not eq or not dot or not method or not name:
        raise argparse.ArgumentTypeError(f"expected METHOD.NAME=VALUE, got {text!r}")
    return method, name, value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="unlearn", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run a grid of methods × forget sets × seeds and print the table",
        description="Run a benchmark grid (default: the benchmark's own grid) and print mean ± std over seeds.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--benchmark", default="digits", help="benchmark name or spec file (default: digits)")
    run.add_argument("--methods", type=_csv, help="comma-separated methods (default: the benchmark's grid)")
    run.add_argument("--forget", type=_csv, help="comma-separated forget specs, e.g. random:0.1,class:3")
    run.add_argument("--seeds", type=_seeds, help="comma-separated seeds, e.g. 0,1,2")
    run.add_argument("--hparam", type=_hparam, action="append", default=[], metavar="METHOD.NAME=VALUE",
                     help="override one hyperparameter (repeatable)")
    run.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N, mps")
    run.add_argument("--threads", type=int, help="CPU threads for torch (default: the benchmark's cpu_threads)")
    run.add_argument("--workdir", type=Path, default=Path("."), help="root of data/runs, data/cache, data/forget-sets")
    run.add_argument("--results-dir", type=Path, help="where records go (default: WORKDIR/data/runs)")
    run.add_argument("--cache-dir", type=Path, help="trained-model cache, shareable (default: WORKDIR/data/cache)")
    run.add_argument("--data-root", type=Path, help="dataset files for torchvision datasets (default: WORKDIR/data/datasets)")
    run.add_argument("--download", action="store_true", help="allow downloading a missing torchvision dataset")
    run.add_argument("--retry-failed", action="store_true", help="rerun cells whose record says failed")
    bar = run.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="show progress bars")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="log one line per cell instead")
    run.set_defaults(handler=cmd_run)

    methods = sub.add_parser("methods", help="list unlearning methods, one per line")
    methods.set_defaults(handler=cmd_methods)
    benchmarks = sub.add_parser("benchmarks", help="list benchmarks, one per line")
    benchmarks.set_defaults(handler=cmd_benchmarks)
    return parser


def _hparam_overrides(items: Sequence[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for method, name, value in items:
        out.setdefault(method, {})[name] = yaml.safe_load(value) if value else value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from unlearn.device import configure_threads, resolve_device
    from unlearn.harness import Runner, Task, Workspace, plan_grid
    from unlearn.leaderboard import AVG_GAP, RUN_TIME, format_text, summarize
    from unlearn.spec import load_benchmark

    spec = load_benchmark(args.benchmark)
    plan = plan_grid(spec, args.methods, args.forget, args.seeds, _hparam_overrides(args.hparam))
    device = resolve_device(args.device)
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    configure_threads(device, args.threads or spec.cpu_threads)
    workspace = Workspace.at(
        args.workdir,
        results_dir=args.results_dir,
        cache_dir=args.cache_dir,
        data_root=args.data_root,
        download=args.download,
    )
    workspace.check_writable()
    task = Task.load(spec, workspace, device)
    task.check(plan)

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    log = None if progress else (lambda msg: print(msg, file=sys.stderr, flush=True))
    print(f"unlearn: {spec.name}: {plan.size} cells on {device}; records in {workspace.results_dir}", file=sys.stderr)
    result = Runner(plan, task, workspace, progress=progress, log=log, retry_failed=args.retry_failed).run()

    print(format_text(summarize(result.records, [*spec.gap_metrics, AVG_GAP, RUN_TIME])))
    failed = [r for r in result.records if r.status == "failed"]
    print(f"unlearn: {result.ran} cells run, {result.reused} reused, {len(failed)} failed", file=sys.stderr)
    for r in failed:
        print(f"unlearn: failed: {r.method} · {r.forget.spec} · seed {r.seed}: {r.error}", file=sys.stderr)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from unlearn.methods import METHODS, resolve_method
    from unlearn.registry import summary

    for name in METHODS.names():
        cls = resolve_method(name)
        print(f"{name:<16} {cls().track.value:<12} {summary(cls)}")
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from unlearn.spec import available_benchmarks, read_spec

    for name, path in available_benchmarks().items():
        spec = read_spec(path)
        print(f"{name:<16} {spec.description}")
    return 0


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
    except KeyboardInterrupt:
        print("unlearn: interrupted; finished cells are saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
