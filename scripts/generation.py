"""The generation track on digits-ddpm: does a class-conditional DDPM forget a class, and what does it cost?

    python scripts/generation.py [--methods retrain,diffusion-salun,sfd,...] [--seeds 0,1,2]
                                    [--forget class:3] [--workdir DIR] [--keep DIR]

Runs the digits-ddpm grid (default: its methods, class:3, seeds 0, 1, 2) and prints, per method,
mean ± std over seeds of: UA (100 − % of forget-class samples the judge calls the forgotten class),
P-f (the judge's mean p(c_f), %), Acc-r (the judge's accuracy on samples of the remaining classes),
FD (Fréchet distance of judge features, remaining classes, against the real training images),
UA-near (UA on label embeddings a quarter of the way to another class), samples/s and each
method's run time. Then the checks the generation track is for: the original model's forget-class
samples are recognised; after SalUn and SFD few are; the remaining classes keep their judge accuracy
and FD close to the original's; and SFD's one-step sampling speed-up over the original's 50 DDIM
steps. Models come from (and go to) WORKDIR/data/cache; records (with their sample grids) go to
`--keep` or a temporary directory. Sampler settings are the spec's (100 samples per class, 50 DDIM
steps, guidance 2).
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
from unlearn.results import ResultRecord  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402

COLUMNS = ("UA", "P-f", "Acc-r", "FD", "UA-near", "Samples/s")
FORGETTERS = ("diffusion-salun", "sfd")


def stat(values: list[float]) -> str:
    if not values:
        return f"{'—':>13}"
    if len(values) == 1:
        return f"{values[0]:13.2f}"
    return f"{statistics.fmean(values):6.2f} ± {statistics.stdev(values):5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", help="comma-separated (default: the benchmark's grid)")
    parser.add_argument("--forget", default="class:3", help="a class-wise forget set (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where data/cache lives")
    parser.add_argument("--keep", type=Path, help="write the records and sample grids here instead of a temporary dir")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_benchmark("digits-ddpm")
    methods = args.methods.split(",") if args.methods else None
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = plan_grid(spec, methods, [args.forget], seeds)
    task = load_kind(spec, Workspace.at(args.workdir), torch.device("cpu"))
    task.check(plan.forgets, plan.methods)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        workspace = Workspace.at(args.workdir, results_dir=out / "runs")
        records = Grid(plan, task, workspace, progress=True).run().records
        report(records, [m.name for m in plan.methods], time.perf_counter() - began)
        if args.keep:
            print(f"\nrecords and sample grids (*.samples.png) under {out / 'runs'}")


def report(records: list[ResultRecord], methods: list[str], wall: float) -> None:
    ok = [r for r in records if r.status == "ok"]
    rows: dict[str, dict[str, list[float]]] = {"original": {}}
    times: dict[str, list[float]] = {}
    for r in ok:
        for key in COLUMNS:
            rows.setdefault(r.method, {}).setdefault(key, []).append(r.metrics[key])
        times.setdefault(r.method, []).append(r.run_time_s or 0.0)
    for r in {(r.seed): r for r in ok}.values():  # the original model, once per seed
        for key in COLUMNS:
            rows["original"].setdefault(key, []).append(r.original_metrics[key])
    print(f"\ndigits-ddpm · forget {records[0].forget.spec} · mean ± std over seeds "
          f"({len({r.seed for r in records})} seeds, {len(records)} cells, {wall:.0f} s wall)")
    print(f"{'method':24s}" + "".join(f"{k:>16s}" for k in COLUMNS) + f"{'run time (s)':>16s}")
    for method in ["original", *methods]:
        if method not in rows:
            continue
        print(f"{method:24s}" + "".join(f"{stat(rows[method].get(k, [])):>16s}" for k in COLUMNS)
              + f"{stat(times.get(method, [])):>16s}")
    failed = [r for r in records if r.status == "failed"]
    for r in failed:
        print(f"FAILED {r.method} seed {r.seed}: {r.error}")

    def mean(method: str, key: str) -> float:
        return statistics.fmean(rows[method][key])

    print("\nchecks")
    print(f"  original recognises the forget class: UA {mean('original', 'UA'):.1f} (judge accuracy "
          f"{100 - mean('original', 'UA'):.1f} %)")
    for method in FORGETTERS:
        if method in rows and rows[method]:
            print(f"  {method}: UA {mean(method, 'UA'):.1f}; Acc-r {mean(method, 'Acc-r'):.1f} vs original "
                  f"{mean('original', 'Acc-r'):.1f}; FD {mean(method, 'FD'):.2f} vs original {mean('original', 'FD'):.2f}")
    if "sfd" in rows and rows["sfd"]:
        speed = mean("sfd", "Samples/s") / mean("original", "Samples/s")
        print(f"  sfd samples in 1 network evaluation against 2 x 50 (guided DDIM): {speed:.0f}x the original's "
              f"samples/s ({mean('sfd', 'Samples/s'):.0f} vs {mean('original', 'Samples/s'):.1f})")


if __name__ == "__main__":
    main()
