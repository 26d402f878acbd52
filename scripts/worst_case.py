"""Do worst-case forget sets challenge methods more than random ones? (digits)

    python scripts/worst_case.py [--methods finetune,random-label] [--seeds 0,1,2] [--fraction 0.1]
                                    [--hparam METHOD.NAME=VALUE ...] [--workdir DIR]

For each seed it builds (or reuses, from WORKDIR/data/forget-sets/digits/digits/) the
worst-case set `worst-case:F` (bi-level selection, FT-style lower level, the defaults),
the easiest set (`:objective=easiest`, the contrast) and, for class-wise forgetting,
`worst-case-class:1`; then runs the methods with the benchmark's tuned hyperparameters
(chosen on validation data of random:0.1 and class:3, reused unchanged; `--hparam`
overrides one, e.g. with the values `unlearn tune --forget random:0.1` picks) on the random
set `random:F`, the worst-case and the easiest set, and on class:3 and the worst-case
class. It prints, mean ± std over seeds:

- the cost of building a set afresh, as a multiple of training the original model once
  (both timed by the script);
- how far the upper step moves the weights: members of the set replaced over the upper
  iterations for upper_lr 1e-2 (the reference's nominal value) up to 1e4;
- whether each set's selection settled: the steps that changed it, the stable tail, the
  iteration whose set was kept (the best upper objective) and the convergence verdict;
- the oracle's forget accuracy (100 − UA) on each set: a worst-case set is one the rest of
  the data explains, so even the oracle classifies it;
- each method's Avg. Gap to the oracle on each set, and whether it is larger on the
  worst-case set than on the random one.
Models come from (and go to) WORKDIR/data/cache.
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
import yaml  # noqa: E402

from unlearn.cli.forget_sets import convergence_line  # noqa: E402
from unlearn.forget import ForgetSpec  # noqa: E402
from unlearn.harness import Grid, Workspace, load_kind, plan_grid  # noqa: E402
from unlearn.results import ORACLE  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402
from unlearn.train import train_with_recipe  # noqa: E402

SCALES = (1e-2, 1.0, 1e2, 1e4)


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="finetune,random-label", help="comma-separated (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--fraction", type=float, default=0.1, help="forget-set fraction (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where data/cache and data/forget-sets live")
    parser.add_argument("--hparam", action="append", default=[], metavar="METHOD.NAME=VALUE",
                        help="override a hyperparameter for every forget set (repeatable)")
    args = parser.parse_args()
    hparams: dict[str, dict] = {}
    for item in args.hparam:
        target, _, value = item.partition("=")
        method, _, name = target.rpartition(".")
        hparams.setdefault(method, {})[name] = yaml.safe_load(value)
    torch.set_num_threads(1)
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",")]
    f = f"{args.fraction:g}"
    data_sets = {"random": f"random:{f}", "worst-case": f"worst-case:{f}", "easiest": f"worst-case:{f}:objective=easiest"}
    class_sets = {"class:3": "class:3", "worst-case class": "worst-case-class:1"}
    sets = {**data_sets, **class_sets}

    spec = load_benchmark("digits")
    task = load_kind(spec, Workspace.at(args.workdir), torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace.at(args.workdir, results_dir=Path(tmp) / "runs")
        plan = plan_grid(spec, [ORACLE, *methods], list(sets.values()), seeds, hparams)
        task.check(plan.forgets, plan.methods)
        runner = Grid(plan, task, workspace, progress=True)

        # Cost, measured here under the same conditions: a fresh build (into a scratch folder) against one
        # fresh training run of the original model.
        scratch = Grid(plan, task, Workspace.at(args.workdir, results_dir=Path(tmp) / "runs",
                                                  forget_dir=Path(tmp) / "forget-sets"))
        began = time.perf_counter()
        train_with_recipe(task.new_model(seeds[0]), task.train, spec.train, seeds[0])
        training = time.perf_counter() - began
        print(f"\nCost of building a set, seed {seeds[0]} (x training the original model once: {training:.2f} s):")
        for name in ("worst-case", "easiest", "worst-case class"):
            scratch.models.load_or_train_original(seeds[0])  # (loaded from the cache, not timed)
            began = time.perf_counter()
            manifest = scratch.models.build_manifest(ForgetSpec.parse(sets[name]), seeds[0])
            seconds = time.perf_counter() - began
            print(f"  {name:<18} {seconds:.2f} s = {seconds / training:.2f} x  ({manifest.provenance['epochs_trained']} "
                  f"signSGD epochs + {manifest.provenance['settings']['upper_iters']} loss passes; the recipe trains "
                  f"{spec.train.epochs} epochs)")

        print("\nDid the selection settle? (the manifests' convergence reports)")
        for name in ("worst-case", "easiest", "worst-case class"):
            for seed in seeds:
                report = runner.models.build_manifest(ForgetSpec.parse(sets[name]), seed).provenance["convergence"]
                print(f"  {name:<18} seed {seed}: {convergence_line(report)}")

        print(f"\nDoes the upper step move the weights? (seed {seeds[0]}: set members replaced per upper iteration)")
        for scale in SCALES:
            manifest = scratch.models.build_manifest(ForgetSpec.parse(f"worst-case:{f}:upper_lr={scale:g}"), seeds[0])
            changed = [row["changed"] for row in manifest.provenance["trajectory"][1:]]
            print(f"  upper_lr {scale:>8g}: {sum(changed):>4} in total  {changed}")

        records = runner.run().records

    def of(method: str, forget: str, key) -> list[float]:
        return [key(r) for r in records if r.method == method and r.forget.spec == forget and r.status == "ok"]

    print(f"\nOracle forget accuracy (100 − UA, %) and Avg. Gap to the oracle, mean ± std over seeds {seeds}:")
    header = f"  {'':<30}" + "".join(f"{name:>20}" for name in sets)
    print(header)
    print(f"  {'oracle forget acc.':<30}" + "".join(
        f"{mean_std(of(ORACLE, text, lambda r: 100 - r.metrics['UA'])):>20}" for text in sets.values()))
    for method in methods:
        print(f"  {method + ' Avg. Gap':<30}" + "".join(
            f"{mean_std(of(method, text, lambda r: r.gaps['Avg. Gap'])):>20}" for text in sets.values()))

    print()
    for worst, base in (("worst-case", "random"), ("worst-case class", "class:3")):
        if worst == "worst-case":  # (for a forgotten class the oracle's forget accuracy is always 0)
            fa = [statistics.fmean(of(ORACLE, sets[k], lambda r: 100 - r.metrics["UA"])) for k in (worst, base)]
            print(f"  oracle forget accuracy {worst} {fa[0]:.2f} vs {base} {fa[1]:.2f}: "
                  f"{'higher' if fa[0] > fa[1] else 'NOT higher'}")
        for method in methods:
            gaps = [statistics.fmean(of(method, sets[k], lambda r: r.gaps["Avg. Gap"])) for k in (worst, base)]
            verdict = "larger" if gaps[0] > gaps[1] else "NOT larger"
            print(f"  {method:<20} Avg. Gap {worst} {gaps[0]:.2f} vs {base} {gaps[1]:.2f}: {verdict}")


if __name__ == "__main__":
    main()
