"""Switch-off methods as k grows: forget and retained accuracy of the top-k units (or experts) against k random ones.

    python scripts/switch_off.py [--benchmark digits] [--methods neuron-deactivation,neuron-deactivation-random]
                                 [--ks 1,2,4,8,16,32] [--forget class:3] [--seeds 0,1,2] [--set METHOD.NAME=VALUE]
                                 [--workdir DIR] [--jobs N] [--plot FILE]

Runs the benchmark's ordinary grid once per k, with `k` overridden for every listed method (and any `--set`
values, e.g. `expert-deactivation.mode=force`), and prints, per k and method, the mean ± std over seeds of UA
(100 − forget accuracy), RA (retain accuracy) and TA (test accuracy of the remaining classes), with each k's run
time. `--plot` saves forget accuracy and test accuracy against k (PNG). The original model of each seed is trained
once, in WORKDIR/data/cache; records go to WORKDIR/data/runs. The seeds should be ones no value was tuned on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.executors import make_executor  # noqa: E402
from unlearn.harness import Grid, Workspace, load_kind, plan_grid  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402
from unlearn.yaml_input import parse_scalar  # noqa: E402

COLUMNS = ("UA", "RA", "TA")


def overrides(methods: list[str], k: int, settings: list[str]) -> dict[str, dict[str, object]]:
    """Each method's hyperparameters for one k: k, then the `--set METHOD.NAME=VALUE` values."""
    out: dict[str, dict[str, object]] = {m: {"k": k} for m in methods}
    for item in settings:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        out.setdefault(method, {})[name] = parse_scalar(value, f"--set {item}")
    return out


def cell(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:13.1f}" if values else f"{'—':>13}"
    return f"{statistics.fmean(values):6.1f} ± {statistics.stdev(values):4.1f}"


def plot(rows: dict[tuple[int, str], dict[str, list[float]]], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((axes[0], "UA", "forget accuracy (100 − UA), %"), (axes[1], "TA", "test accuracy, %")):
        for method in methods:
            ks = sorted(k for k, m in rows if m == method)
            means = [statistics.fmean(rows[k, method][key]) for k in ks]
            if key == "UA":
                means = [100 - v for v in means]
            spread = [statistics.stdev(rows[k, method][key]) if len(rows[k, method][key]) > 1 else 0 for k in ks]
            ax.errorbar(ks, means, yerr=spread, marker="o", capsize=3, label=method)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (units or experts switched off)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="digits")
    parser.add_argument("--methods", default="neuron-deactivation,neuron-deactivation-random")
    parser.add_argument("--ks", default="1,2,4,8,16,32")
    parser.add_argument("--forget", default="class:3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.NAME=VALUE")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1, in this process)")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    spec = load_benchmark(args.benchmark)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace.at(args.workdir or Path(tmp))
        kind = load_kind(spec, workspace, torch.device("cpu"))
        rows: dict[tuple[int, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        print(f"{spec.name}, forget {args.forget}, seeds {seeds}: mean ± std over seeds")
        print(f"{'k':>4}  {'method':28}" + "".join(f"{c:>15}" for c in COLUMNS) + f"{'time (s)':>10}")
        for k in (int(v) for v in args.ks.split(",")):
            plan = plan_grid(spec, methods, [args.forget], seeds, overrides(methods, k, args.set))
            kind.check(plan.forgets, plan.methods)
            start = time.perf_counter()
            executor = make_executor("process", args.jobs) if args.jobs > 1 else None
            records = Grid(plan, kind, workspace).run(executor).records
            seconds = time.perf_counter() - start
            for record in records:
                if record.status == "ok":
                    for column in COLUMNS:
                        rows[k, record.method][column].append(record.metrics[column])
            for method in methods:
                values = rows[k, method]
                failed = sum(1 for r in records if r.method == method and r.status != "ok")
                note = f"  ({failed} failed)" if failed else ""
                print(f"{k:>4}  {method:28}" + "".join(f"{cell(values[c]):>15}" for c in COLUMNS)
                      + f"{seconds:10.0f}{note}")
        if args.plot:
            plot(rows, methods, args.plot)


if __name__ == "__main__":
    main()
