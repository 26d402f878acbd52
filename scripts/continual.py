"""Continual forgetting on digits-vit: GS-LoRA, GS-LoRA++ and the comparison methods, task by task.

    python scripts/continual.py [--methods gs-lora,gs-lora-plus,finetune,...] [--seeds 0,1,2]
                                   [--forget continual:3x2,continual:3x2:shots=4] [--workdir DIR]

Runs the digits-vit benchmark's continual sequences (3 tasks of 2 classes, class order
from the seed; full retain data, and 4 retained samples per class) and prints, per
sequence and method, mean over seeds after every task t:
Acc_f (test accuracy on task t's classes), Acc_r (on the classes not forgotten yet),
Acc_o (on the classes earlier tasks forgot) and H (harmonic mean of the drop of Acc_f
and Acc_r); then whether earlier-forgotten classes stay forgotten (Acc_o after task t
against those classes' accuracy right after they were forgotten); and, for GS-LoRA,
the trainable fraction and how many of the ViT's blocks each task's group penalty left
untouched (adapter group norm 0 at the end of the task). Models come from (and go to)
WORKDIR/data/cache; the records go to a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.harness import Grid, Workspace, load_kind, plan_grid  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402

KEYS = ("Acc_f", "Acc_r", "Acc_o", "H")


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def fmt(value: float | None) -> str:
    return f"{value:6.1f}" if value is not None else f"{'—':>6}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", help="comma-separated (default: the benchmark's grid)")
    parser.add_argument("--forget", help="comma-separated continual specs (default: the benchmark's grid)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where data/cache lives")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_benchmark("digits-vit")
    methods = args.methods.split(",") if args.methods else None
    forgets = args.forget.split(",") if args.forget else None
    seeds = [int(s) for s in args.seeds.split(",")]
    task = load_kind(spec, Workspace.at(args.workdir), torch.device("cpu"))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_grid(spec, methods, forgets, seeds)
        task.check(plan.forgets, plan.methods)
        records = Grid(plan, task, Workspace.at(args.workdir, results_dir=Path(tmp) / "runs"), progress=True).run().records
    wall = time.perf_counter() - began
    failed = [r for r in records if r.status != "ok"]
    ok = [r for r in records if r.status == "ok"]

    for forget in plan.forgets:
        rows = [r for r in ok if r.forget.spec == forget.text]
        if not rows:
            continue
        tasks = max(int(k.split("@")[1]) for k in rows[0].metrics if "@" in k)
        print(f"\n{spec.name} · {forget.text} · mean over seeds {seeds} (%)")
        print(f"  {'method':<22}" + "".join(f"{'task ' + str(t) + ' ' + k:>14}" for t in range(1, tasks + 1)
                                             for k in KEYS))
        reference = [("original", [r.original_metrics for r in rows if r.method == rows[0].method])]
        methods_seen = list(dict.fromkeys(r.method for r in rows))
        for label, metric_sets in reference + [(m, [r.metrics for r in rows if r.method == m]) for m in methods_seen]:
            cells = [fmt(mean([ms[f"{k}@{t}"] for ms in metric_sets if f"{k}@{t}" in ms]))
                     for t in range(1, tasks + 1) for k in KEYS]
            print(f"  {label:<22}" + "".join(f"{c:>14}" for c in cells))

        print("  earlier-forgotten classes: Acc_o after task t vs their accuracy right after they were forgotten")
        for method in methods_seen:
            runs = [r.metrics for r in rows if r.method == method]
            parts = []
            for t in range(2, tasks + 1):
                after = mean([statistics.fmean(m[f"Acc_f@{j}"] for j in range(1, t)) for m in runs])
                parts.append(f"task {t}: {fmt(mean([m[f'Acc_o@{t}'] for m in runs]))} vs {fmt(after)}")
            print(f"    {method:<20} " + "   ".join(parts))

        for method in methods_seen:
            infos = [r.method_info.get("tasks", []) for r in rows if r.method == method]
            if not infos or not infos[0] or "nonzero_groups" not in infos[0][0]:
                continue
            fraction = mean([i["trainable_fraction"] for run in infos for i in run])
            untouched = [[i["adapter_groups"] - i["nonzero_groups"] for i in run] for run in infos]
            print(f"  {method}: trainable fraction {100 * fraction:.2f} % of the parameters; blocks left untouched "
                  f"per task (of {infos[0][0]['adapter_groups']}), per seed: {untouched}")
        times = {m: mean([r.run_time_s for r in rows if r.method == m]) for m in methods_seen}
        print("  run time per sequence (s): " + ", ".join(f"{m} {t:.1f}" for m, t in times.items()))
    print(f"\nwall time {wall:.0f} s for {len(records)} cells")
    for r in failed:
        print(f"failed: {r.method} {r.forget.spec} seed {r.seed}: {r.error}")


if __name__ == "__main__":
    main()
