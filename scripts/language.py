"""The language track on tasks-lm: does random-label forgetting of one task generalise, and what do probes still read?

    python scripts/language.py [--methods retrain,random-label,...] [--seeds 0,1,2] [--tasks compare,city,...]
                               [--n 1000] [--workdir DIR] [--keep DIR] [--plot FILE] [--jobs N]
                               [--records RESULTS_DIR]

Runs the tasks-lm grid (default: the spec's methods, every task forgotten with `task:T:n=N`, seeds 0, 1, 2; each
seed has its own pretrained model) through the ordinary harness and prints:

1. speed: the pretraining time of each original model, the mean run time of each method, the grid's wall time;
2. per forgotten task (random-label, mean ± std over seeds): the original's accuracy on the forget items and on the
   task's unseen items, the forget gap and forget ratio on both, the probe accuracy after forgetting and its
   difference from the original and from the oracle, and the two predictors (the original's confidence and the
   variability of its representations);
3. the cross-task matrix: the forget ratio on every task (columns) after forgetting task T (rows) with
   random-label, the diagonal being the task's own held-out items, over the tasks the original models learned
   (`LEARNED`); `--plot` saves it as a heat map (PNG);
4. Spearman rank correlations across the learned tasks between each predictor and the held-out forget ratio
   (scipy.stats), with their p-values and the number of tasks;
5. the same summary for every other method that ran.

Models come from (and go to) WORKDIR/data/cache; records go to `--keep` or a temporary directory. A forget ratio
is undefined (shown as —) where the original is within 1 point of chance on that task.
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
from unlearn.harness import Grid, Models, Workspace, load_kind, plan_grid  # noqa: E402
from unlearn.results import ResultRecord, read_record  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402

FORGETTER = "random-label"
TASK_COLUMNS = ("Acc-f", "Acc-h", "Gap-f", "Gap-h", "Ratio-f", "Ratio-h", "Probe", "Probe-Δorig", "Probe-Δoracle")
PREDICTORS = ("Confidence", "Variability")
LEARNED = 10.0
"""A task counts as learned, and its forget ratios enter the matrix and the correlations, when the original models
answer its unseen items at least this many points above chance: the ratio divides by that margin, so near chance
it is noise (a ratio of 4 from a 1-point margin says nothing)."""


def mean_std(values: list[float]) -> str:
    if not values:
        return f"{'—':>13}"
    if len(values) == 1:
        return f"{values[0]:13.2f}"
    return f"{statistics.fmean(values):6.2f} ± {statistics.stdev(values):5.2f}"


def task_of(record: ResultRecord) -> str:
    return record.forget.spec.split(":")[1]


def collect(records: list[ResultRecord], method: str) -> dict[str, dict[str, list[float]]]:
    """Per forgotten task: every metric of `method`'s ok records, and the original's accuracies, as lists."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.method != method or r.status != "ok":
            continue
        row = table[task_of(r)]
        for key, value in r.metrics.items():
            row[key].append(value)
        row["orig Acc-f"].append(r.original_metrics["Acc-f"])
        row["orig Acc-h"].append(r.original_metrics["Acc-h"])
    return table


def print_tasks(table: dict[str, dict[str, list[float]]], method: str) -> None:
    columns = ("orig Acc-f", "orig Acc-h", *TASK_COLUMNS, *PREDICTORS)
    print(f"\n{method} · per forgotten task · mean ± std over seeds (accuracies %, ratios: 1 = chance, 0 = kept)")
    print(f"{'task':10s}" + "".join(f"{c:>16s}" for c in columns))
    for task in sorted(table):
        print(f"{task:10s}" + "".join(f"{mean_std(table[task].get(c, [])):>16s}" for c in columns))


def learned(records: list[ResultRecord]) -> dict[str, float]:
    """The original models' mean accuracy (%) on each task's unseen test items, over seeds."""
    seen: dict[str, list[float]] = defaultdict(list)
    for r in {(r.seed, r.forget.spec): r for r in records if r.status == "ok"}.values():
        seen[task_of(r)].append(r.original_metrics["Acc-h"])
    return {task: statistics.fmean(values) for task, values in seen.items()}


def cross_task_matrix(table: dict[str, dict[str, list[float]]], known: dict[str, float]
                      ) -> tuple[list[str], list[list[float | None]]]:
    """Rows: the forgotten task; columns: the task measured (the diagonal is the task's own held-out ratio); only
    tasks the original models learned (`LEARNED`), since a ratio over a margin near chance is noise."""
    tasks = sorted(t for t in table if known.get(t, 0.0) - 50.0 >= LEARNED)
    matrix: list[list[float | None]] = []
    for forgotten in tasks:
        row = []
        for measured in tasks:
            key = "Ratio-h" if measured == forgotten else f"Ratio[{measured}]"
            values = table[forgotten].get(key, [])
            row.append(statistics.fmean(values) if values else None)
        matrix.append(row)
    return tasks, matrix


def print_matrix(tasks: list[str], matrix: list[list[float | None]]) -> None:
    print(f"\ncross-task forget ratio after {FORGETTER} (rows: task forgotten; columns: task measured, on its "
          f"unseen test items; mean over seeds)")
    print(f"{'':10s}" + "".join(f"{t:>9s}" for t in tasks))
    for task, row in zip(tasks, matrix, strict=True):
        print(f"{task:10s}" + "".join(f"{v:9.2f}" if v is not None else f"{'—':>9s}" for v in row))


def plot_matrix(tasks: list[str], matrix: list[list[float | None]], path: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    values = np.array([[np.nan if v is None else v for v in row] for row in matrix])
    fig = Figure(figsize=(1.0 + 0.6 * len(tasks), 0.8 + 0.5 * len(tasks)))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("task measured (unseen items)")
    ax.set_ylabel(f"task forgotten ({FORGETTER})")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="forget ratio")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"heat map: {path}")


def print_correlations(table: dict[str, dict[str, list[float]]], tasks: list[str]) -> None:
    from scipy.stats import spearmanr

    print(f"\npredictors against the held-out forget ratio, across the learned tasks ({', '.join(tasks)}; "
          f"Spearman rank correlation)")
    for predictor in PREDICTORS:
        pairs = [(statistics.fmean(table[t][predictor]), statistics.fmean(table[t]["Ratio-h"]))
                 for t in tasks if table[t].get(predictor) and table[t].get("Ratio-h")]
        if len(pairs) < 3:
            print(f"  {predictor}: fewer than 3 tasks with both values")
            continue
        result = spearmanr([p for p, _ in pairs], [r for _, r in pairs])
        print(f"  {predictor}: rho {result.statistic:+.2f}, p {result.pvalue:.3f} over {len(pairs)} tasks")


def print_speed(originals: dict[int, float], records: list[ResultRecord], wall: float) -> None:
    print("\nspeed")
    for seed, seconds in sorted(originals.items()):
        print(f"  pretraining the original model of seed {seed}: {seconds:.0f} s")
    times: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.status == "ok" and r.run_time_s is not None:
            times[r.method].append(r.run_time_s)
    for method, values in sorted(times.items()):
        print(f"  {method}: {statistics.fmean(values):.1f} s per run (max {max(values):.1f}, {len(values)} runs)")
    print(f"  grid: {len(records)} cells in {wall:.0f} s wall (this script's; with --records, reading them)")
    failed = [r for r in records if r.status == "failed"]
    for r in failed:
        print(f"  FAILED {r.method} {r.forget.spec} seed {r.seed}: {r.error}")


def plan_forgets(plan) -> set[str]:
    return {forget.text for forget in plan.forgets}


def plan_methods(plan) -> set[str]:
    return {choice.name for choice in plan.methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", help="comma-separated (default: the benchmark's grid)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--tasks", help="comma-separated tasks to forget (default: every task of the suite)")
    parser.add_argument("--n", type=int, default=1000, help="forget items per task (default: %(default)s)")
    parser.add_argument("--benchmark", default="tasks-lm", help="a language benchmark (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where data/cache lives")
    parser.add_argument("--keep", type=Path, help="write the records here instead of a temporary directory")
    parser.add_argument("--plot", type=Path, help="save the cross-task matrix as a PNG heat map here")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default: %(default)s, serial here)")
    parser.add_argument("--records", type=Path, help="read the records under this results directory (e.g. "
                        "WORKDIR/data/runs of `unlearn run`) instead of running the grid")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_benchmark(args.benchmark)
    kind = load_kind(spec, Workspace.at(args.workdir), torch.device("cpu"))
    tasks = args.tasks.split(",") if args.tasks else kind.dataset.suite.names
    forgets = [f"task:{task}:n={args.n}" for task in tasks]
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = plan_grid(spec, args.methods.split(",") if args.methods else None, forgets, seeds)
    kind.check(plan.forgets, plan.methods)
    began = time.perf_counter()
    if args.records is not None:  # the records of an earlier run, e.g. `unlearn run --benchmark tasks-lm`
        records = [r for path in sorted((args.records / spec.name).rglob("*.json")) for r in [read_record(path)]
                   if r.seed in seeds and r.forget.spec in plan_forgets(plan) and r.method in plan_methods(plan)]
    else:
        executor = make_executor("process", args.jobs) if args.jobs > 1 else None
        with tempfile.TemporaryDirectory() as tmp:
            workspace = Workspace.at(args.workdir, results_dir=(args.keep or Path(tmp)) / "runs")
            records = Grid(plan, kind, workspace, progress=True).run(executor).records
    wall = time.perf_counter() - began
    models = Models(kind, Workspace.at(args.workdir))  # the originals' training times, where they are cached
    cached = {seed: models.cache.load("original", kind.original_key(seed), lambda seed=seed: kind.new_model(seed))
              for seed in seeds}
    originals = {seed: hit.seconds for seed, hit in cached.items() if hit is not None}
    print_speed(originals, records, wall)
    known = learned(records)
    print("\nthe original models' accuracy on each task's unseen items (mean over seeds, %): "
          + ", ".join(f"{task} {acc:.1f}" for task, acc in sorted(known.items()))
          + f"; learned (at least {LEARNED:g} points above chance): "
          + ", ".join(t for t, acc in sorted(known.items()) if acc - 50.0 >= LEARNED))
    table = collect(records, FORGETTER)
    if table:
        print_tasks(table, FORGETTER)
        names, matrix = cross_task_matrix(table, known)
        print_matrix(names, matrix)
        if args.plot:
            plot_matrix(names, matrix, args.plot)
        print_correlations(table, names)
    for method in [m.name for m in plan.methods]:
        if method not in (FORGETTER, "retrain"):
            other = collect(records, method)
            if other:
                print_tasks(other, method)


if __name__ == "__main__":
    main()
