"""Corrective unlearning on digits: which methods remove a manipulation, at which identified fraction?

    python scripts/corrective.py [--manipulation poison:0.1] [--identified 0.1,0.25,0.5,1]
                                    [--methods retrain,finetune,...] [--seeds 0,1,2] [--workdir DIR]
                                    [--plot asr.png]

The manipulation (default: 10 % of the training set poisoned with a 2×2 corner trigger
and relabelled to class 0; or e.g. `interclass:3-5`) is applied before the original
model trains; each method is then given only the identified fraction of the manipulated
samples as its forget set, with the benchmark's tuned hyperparameters. It prints, mean
over seeds, the attack success rate (ASR: poisoned test images predicted as the target;
interclass: confused-class test images predicted as the other class) per method and
identified fraction, next to the original model, the oracle retrained without the
identified samples and the ideal oracle retrained without every manipulated sample,
then the accuracy on manipulated test images with their true labels (Manip-Acc) and
the clean test accuracy (TA). A method "removes" the manipulation (marked *) when its ASR
is within 5 points of the ideal oracle's while its TA stays within 10 points of the ideal
oracle's (a method that wrecks the model also lowers the ASR).
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
from unlearn.results import ORACLE  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402

METHODS = ("retrain,finetune,grad-ascent,neggrad-plus,random-label,salun,l1-sparse,boundary-shrink,scrub,ssd,"
           "bad-teacher,amnesiac")
REMOVED_WITHIN = 5.0
TA_WITHIN = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manipulation", default="poison:0.1", help="MANIPULATION:ARG (default: %(default)s)")
    parser.add_argument("--identified", default="0.1,0.25,0.5,1", help="identified fractions (default: %(default)s)")
    parser.add_argument("--methods", default=METHODS, help="comma-separated (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where data/cache and data/forget-sets live")
    parser.add_argument("--plot", type=Path, help="also draw ASR against the identified fraction into this PNG")
    args = parser.parse_args()
    torch.set_num_threads(1)
    methods = [m for m in args.methods.split(",") if m]
    methods = [ORACLE, *[m for m in methods if m != ORACLE]]
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [f for f in args.identified.split(",") if f]
    forgets = {f: f"corrective:{args.manipulation}:{f}" for f in fractions}

    spec = load_benchmark("digits")
    task = load_kind(spec, Workspace.at(args.workdir), torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace.at(args.workdir, results_dir=Path(tmp) / "runs")
        plan = plan_grid(spec, methods, list(forgets.values()), seeds)
        task.check(plan.forgets, plan.methods)
        records = Grid(plan, task, workspace, progress=True).run().records
    forget_text = {f: plan.forgets[i].text for i, f in enumerate(fractions)}

    def mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    def cell(method: str, fraction: str, key: str, which: str = "metrics") -> float | None:
        rs = [r for r in records if r.forget.spec == forget_text[fraction] and r.status == "ok"]
        if which != "metrics":
            rs = [r for r in rs if r.method == ORACLE]
            return mean([getattr(r, which)[key] for r in rs])
        return mean([r.metrics[key] for r in rs if r.method == method])

    failed = [r for r in records if r.status != "ok"]
    for key in ("ASR", "Manip-Acc", "TA"):
        print(f"\n{key} (%), digits, corrective:{args.manipulation}, mean over seeds {seeds}"
              + (f"; * = ASR within {REMOVED_WITHIN:g} of the ideal oracle's, TA within {TA_WITHIN:g}"
                 if key == "ASR" else ""))
        print(f"  {'identified fraction':<30}" + "".join(f"{f:>10}" for f in fractions))
        rows = [("original (before unlearning)", "original_metrics", None),
                ("ideal oracle (all removed)", "ideal_oracle_metrics", None)]
        for label, which, _ in rows:
            print(f"  {label:<30}" + "".join(f"{cell(ORACLE, f, key, which):>10.1f}" for f in fractions))
        for method in methods:
            values = []
            for f in fractions:
                v, ta = cell(method, f, key), cell(method, f, "TA")
                ideal, ideal_ta = (cell(ORACLE, f, k, "ideal_oracle_metrics") for k in ("ASR", "TA"))
                removed = v is not None and v <= ideal + REMOVED_WITHIN and ta >= ideal_ta - TA_WITHIN
                mark = "*" if key == "ASR" and removed else " "
                values.append(f"{v:>9.1f}{mark}" if v is not None else f"{'failed':>10}")
            label = f"{method} (oracle)" if method == ORACLE else method
            print(f"  {label:<30}" + "".join(values))
    if args.plot is not None:
        plot(args.plot, args.manipulation, fractions, methods, cell)
        print(f"\nwrote {args.plot}")
    if failed:
        print(f"\n{len(failed)} failed cells: " + "; ".join(f"{r.method} {r.forget.spec} s{r.seed}: {r.error}"
                                                             for r in failed[:5]))


def plot(path: Path, manipulation: str, fractions: list[str], methods: list[str], cell) -> None:
    """ASR per method against the identified fraction, with the original and the ideal oracle as lines."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs = [float(f) for f in fractions]
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, which, style in (("original", "original_metrics", ":"), ("ideal oracle", "ideal_oracle_metrics", "--")):
        ax.plot(xs, [cell(ORACLE, f, "ASR", which) for f in fractions], style, color="0.4", label=label)
    colours = colormaps["tab20"].colors
    for i, method in enumerate(methods):
        ys = [cell(method, f, "ASR") for f in fractions]
        ax.plot(xs, [float("nan") if y is None else y for y in ys], "o-",
                lw=2.5 if method == ORACLE else 1.2, color="black" if method == ORACLE else colours[i % 20],
                label=f"{method} (oracle)" if method == ORACLE else method)
    ax.set(xscale="log", xticks=xs, xticklabels=fractions, xlabel="identified fraction of the manipulated samples",
           ylabel="attack success rate (%)", title=f"digits, corrective:{manipulation}")
    ax.legend(fontsize=7, ncol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
