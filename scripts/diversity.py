"""Diversity of the remaining classes' samples on digits-ddpm: does a method keep the data's spread, or draw each
class's most typical image again and again?

    python scripts/diversity.py [--methods retrain,sfd] [--seeds 0,1,2] [--forget class:3] [--workdir DIR]

Runs the digits-ddpm grid (default: retrain and sfd, class:3, seeds 0, 1, 2) with the `diversity` metric added
to the benchmark's metrics (so the cells hash apart from the committed ones) and prints, per seed and per model
(the original, the oracle, each method): Div-r (mean pairwise distance of judge features of each remaining class's
samples over the real images'; 1 = as diverse as the data), Coverage-r (Naeem et al.'s coverage, k = 5, %; next to
it the expectation for a sample of the data itself at these sizes), Acc-r and FD. Original models and oracles come
from (and go to) WORKDIR/data/cache; records go to a temporary directory. A method's run retrains it (sfd: a few
CPU-minutes per seed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.harness import Grid, Workspace, load_kind, plan_grid  # noqa: E402
from unlearn.results import ORACLE, ResultRecord  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402

COLUMNS = ("Div-r", "Coverage-r", "Acc-r", "FD")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="retrain,sfd", help="comma-separated (default: %(default)s)")
    parser.add_argument("--forget", default="class:3", help="a class-wise forget set (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where data/cache lives")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_benchmark("digits-ddpm")
    spec = spec.model_copy(update={"metrics": [*spec.metrics, "diversity"]})
    methods = args.methods.split(",")
    if ORACLE not in methods:
        methods.insert(0, ORACLE)
    plan = plan_grid(spec, methods, [args.forget], [int(s) for s in args.seeds.split(",")])
    task = load_kind(spec, Workspace.at(args.workdir), torch.device("cpu"))
    task.check(plan.forgets, plan.methods)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace.at(args.workdir, results_dir=Path(tmp) / "runs")
        records = Grid(plan, task, workspace, progress=True).run().records
    report(records, [m.name for m in plan.methods])


def report(records: list[ResultRecord], methods: list[str]) -> None:
    ok = [r for r in records if r.status == "ok"]
    for r in records:
        if r.status != "ok":
            print(f"FAILED {r.method} seed {r.seed}: {r.error}")
    rows: dict[str, dict[int, dict[str, float]]] = {"original": {}}
    expected: dict[int, float] = {}
    for r in ok:
        rows.setdefault(r.method, {})[r.seed] = r.metrics
        rows["original"][r.seed] = r.original_metrics
        expected[r.seed] = r.metric_info["diversity"]["coverage_of_data"]
    print(f"\ndigits-ddpm · forget {records[0].forget.spec} · Coverage-r of a sample of the data itself at these "
          f"sizes: {statistics.fmean(expected.values()):.1f} %")
    print(f"{'model':14s}{'seed':>6s}" + "".join(f"{k:>12s}" for k in COLUMNS))
    for method in ["original", *methods]:
        for seed, metrics in sorted(rows.get(method, {}).items()):
            print(f"{method:14s}{seed:>6d}" + "".join(f"{metrics[k]:12.3f}" for k in COLUMNS))
        if len(rows.get(method, {})) > 1:
            means = [statistics.fmean(m[k] for m in rows[method].values()) for k in COLUMNS]
            print(f"{method:14s}{'mean':>6s}" + "".join(f"{v:12.3f}" for v in means))


if __name__ == "__main__":
    main()
