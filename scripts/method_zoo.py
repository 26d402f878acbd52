"""The method zoo on digits: every method of the grid, random 10 % and class-wise forgetting, 3 seeds.

    python scripts/method_zoo.py [--workdir DIR] [--results DIR]

Runs (or reuses) the digits grid with the benchmark's tuned hyperparameters, prints
UA, RA, TA, MIA-Efficacy, Avg. Gap and run time (mean ± 95 % CI half-width over seeds) next to the
oracle, then checks the two claims of the published CIFAR-10 table (SalUn, ICLR 2024):
SalUn has the smallest Avg. Gap among the methods, and SSD is the fastest. With
--results it only reads existing records (e.g. leaderboard/results).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unlearn.leaderboard import AVG_GAP, RUN_TIME, format_text, summarize
from unlearn.leaderboard.store import collect
from unlearn.results import ORACLE


def records_of(args: argparse.Namespace) -> list:
    if args.results is not None:
        return collect(args.results).records
    from unlearn.cli import main as cli

    code = cli(["run", "--workdir", str(args.workdir), "--no-progress"])
    if code != 0:
        sys.exit(code)
    return collect(args.workdir / "data" / "runs").records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where `unlearn run` keeps its data")
    parser.add_argument("--results", type=Path, help="read these records instead of running the grid")
    args = parser.parse_args()
    records = [r for r in records_of(args) if r.benchmark == "digits"]
    tables = summarize(records, ["UA", "RA", "TA", "MIA-Efficacy", AVG_GAP, RUN_TIME])
    print(format_text(tables))
    for table in tables:
        methods = [r for r in table.rows if r.role == "method" and r.ok]
        if not methods:
            continue
        by_gap = sorted(methods, key=lambda r: r.stats[AVG_GAP].mean)
        by_time = sorted(methods, key=lambda r: r.stats[RUN_TIME].mean)
        gap_rank = [r.method for r in by_gap].index("salun") + 1 if any(r.method == "salun" for r in methods) else None
        time_rank = [r.method for r in by_time].index("ssd") + 1 if any(r.method == "ssd" for r in methods) else None
        print(f"\n{table.forget}: smallest Avg. Gap {by_gap[0].method} ({by_gap[0].stats[AVG_GAP].mean:.2f}); "
              f"salun ranks {gap_rank}/{len(methods)} ({table.row('salun').stats[AVG_GAP].mean:.2f})"
              if gap_rank else f"\n{table.forget}: smallest Avg. Gap {by_gap[0].method}")
        oracle_time = table.row(ORACLE).stats[RUN_TIME].mean
        print(f"{table.forget}: fastest {by_time[0].method} ({by_time[0].stats[RUN_TIME].mean:.3f} s); "
              f"ssd ranks {time_rank}/{len(methods)}; retraining takes {oracle_time:.2f} s")


if __name__ == "__main__":
    main()
