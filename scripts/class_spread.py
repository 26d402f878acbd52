"""Do a method's tuned hyperparameters transfer from the classes they were tuned on to the others?

    python scripts/class_spread.py [--benchmark digits] [--methods grad-ascent,influence] [--classes 0-9]
                                   [--seeds 0,1,2] [--hparam METHOD.NAME=VALUE ...] [--workdir DIR] [--jobs N]

Runs `unlearn run` on `class:c` for every class c and seed, with the benchmark's tuned
values (or `--hparam` overrides), then prints per method the spread of UA, RA and TA
(test) and of Avg. Gap across classes: the mean over seeds per class, then the mean, std,
min and max of those over the classes, and which class is worst. Seeds 0–2 are the
leaderboard's; no value in a spec is tuned on them (the specs say which seeds were). A
method whose UA swings from forgetting to doing nothing between classes has values that do
not transfer (issue 24). Records and models go to WORKDIR (reused on a rerun).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from unlearn.leaderboard.store import collect

KEYS = ("UA", "RA", "TA", "Avg. Gap")


def classes(text: str) -> list[int]:
    """`0-9` or `0,2,5`."""
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(c) for c in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="digits", help="benchmark (default: %(default)s)")
    parser.add_argument("--methods", default="grad-ascent,neggrad-plus,boundary-shrink,influence",
                        help="comma-separated (default: %(default)s)")
    parser.add_argument("--classes", default="0-9", help="classes to forget, one at a time (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--hparam", action="append", default=[], metavar="METHOD.NAME=VALUE",
                        help="override a tuned value (repeatable)")
    parser.add_argument("--workdir", default="class-spread", help="records and models (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default: %(default)s)")
    args = parser.parse_args()

    forget = ",".join(f"class:{c}" for c in classes(args.classes))
    command = [sys.executable, "-m", "unlearn", "run", "--benchmark", args.benchmark, "--methods",
               f"retrain,{args.methods}", "--forget", forget, "--seeds", args.seeds, "--workdir", args.workdir,
               "--no-progress"]
    if args.jobs > 1:
        command += ["--executor", "process", "--jobs", str(args.jobs)]
    for item in args.hparam:
        command += ["--hparam", item]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    records = collect(Path(args.workdir) / "data" / "runs").records
    # per method, key and class: the values over seeds
    values: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        if r.status != "ok" or r.benchmark != args.benchmark:
            continue
        row = {**r.metrics, "Avg. Gap": r.gaps.get("Avg. Gap")}
        for key in KEYS:
            if row.get(key) is not None:
                values[r.method][key][r.forget.spec].append(row[key])
    print(f"{args.benchmark}: class-wise forgetting of classes {args.classes}, seeds {args.seeds}; per class the "
          "mean over seeds, then across classes: mean ± std [min, max] (worst class)")
    for method in ["retrain", *args.methods.split(",")]:
        print(f"\n{method}")
        for key in KEYS:
            per_class = {c: statistics.fmean(v) for c, v in values[method][key].items()}
            if not per_class:
                continue
            means = list(per_class.values())
            std = statistics.stdev(means) if len(means) > 1 else 0.0
            worst = (min if key in ("UA", "RA", "TA") else max)(per_class, key=per_class.get)
            print(f"  {key:9s} {statistics.fmean(means):6.1f} ± {std:5.1f}  [{min(means):5.1f}, {max(means):5.1f}]"
                  f"  worst {worst} ({per_class[worst]:.1f})")


if __name__ == "__main__":
    main()
