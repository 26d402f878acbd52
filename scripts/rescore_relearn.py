"""Recompute Relearn-Steps of stored records from their stored relearn curves (issue 24's capped target).

    python scripts/rescore_relearn.py RESULTS_DIR [--check OTHER_DIR] [--write]

Relearn-Steps is a function of numbers every record keeps: its own relearn curve
(`metric_info.relearn.curve`, rounded to 4 decimals), the original model's forget accuracy
on the scored samples (`original_forget_accuracy`) and, in the cell's `retrain` record,
the oracle's curve. Issue 24 capped the target at the best accuracy the oracle reaches
(unlearn/metrics/relearn.py), which changes Relearn-Steps and nothing else: not the
curves, not Relearn-FA, not any gap. This script applies the new target to records made
before the change, for a benchmark whose grid is too slow to rerun (tasks-lm: about 70
CPU-minutes); each rewritten record says so in its submission checks.

`--check OTHER_DIR` compares the recomputed values with records of the same cells made by
the new code (e.g. a rerun of digits), and prints every mismatch; run it first. Without
`--write` nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unlearn.leaderboard.store import collect
from unlearn.metrics.relearn import steps_to
from unlearn.results import ORACLE, ResultRecord, write_record
from unlearn.transaction import record_files

NOTE = "Relearn-Steps recomputed from the stored relearn curves with the oracle-capped target (issue 24)"


def rescored(record: ResultRecord, oracle: ResultRecord) -> ResultRecord:
    """`record` with Relearn-Steps (its own, its oracle's and its original's) recomputed from the curves."""
    oracle_info = oracle.metric_info["relearn"]
    best = max(oracle_info["curve"])
    info = dict(record.metric_info["relearn"])
    target = min(info["original_forget_accuracy"], best)
    steps = steps_to(info["curve"], target, info["tolerance"])
    info.update(oracle_best_accuracy=best, target=target, reached=steps < len(info["curve"]))
    oracle_steps = steps_to(oracle_info["curve"], target, info["tolerance"])
    original_steps = 0  # the original starts at its own accuracy, which is at or above the capped target
    update = {
        "metrics": {**record.metrics, "Relearn-Steps": float(steps)},
        "metric_info": {**record.metric_info, "relearn": info},
        "oracle_metrics": {**record.oracle_metrics, "Relearn-Steps": float(oracle_steps)},
        "original_metrics": {**record.original_metrics, "Relearn-Steps": float(original_steps)},
    }
    if record.submission is not None and NOTE not in record.submission.checks:
        update["submission"] = record.submission.model_copy(update={"checks": [*record.submission.checks, NOTE]})
    return record.model_copy(update=update)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a results directory (e.g. leaderboard/results/tasks-lm)")
    parser.add_argument("--check", type=Path, help="records of the same cells made by the new code")
    parser.add_argument("--write", action="store_true", help="rewrite the records in place")
    args = parser.parse_args()
    found = collect(args.results)
    oracles = {(r.benchmark, r.forget.spec, r.seed): r for r in found.records if r.method == ORACLE}
    out: dict[tuple, tuple[str, ResultRecord]] = {}
    changed = 0
    for path, r in zip(found.paths, found.records, strict=True):
        if r.status == "ok" and "relearn" in r.metric_info:
            new = rescored(r, oracles[(r.benchmark, r.forget.spec, r.seed)])
            out[(r.benchmark, r.forget.spec, r.method, r.seed)] = (path, new)
            changed += new.metrics["Relearn-Steps"] != r.metrics["Relearn-Steps"]
    print(f"{len(out)} records with relearn scores; Relearn-Steps changes on {changed}")
    if args.check:
        new = {(r.benchmark, r.forget.spec, r.method, r.seed): r for r in collect(args.check).records}
        mismatches = 0
        for cell, (_, r) in out.items():
            other = new.get(cell)
            if other is None or other.status != "ok":
                continue
            for where in ("metrics", "oracle_metrics", "original_metrics"):
                mine, theirs = getattr(r, where)["Relearn-Steps"], getattr(other, where)["Relearn-Steps"]
                if mine != theirs:
                    mismatches += 1
                    print(f"mismatch {cell} {where}: recomputed {mine} vs rerun {theirs}")
        print(f"checked against {args.check}: {mismatches} mismatches")
    if args.write:
        files = {p.relative_to(args.results.parent).as_posix(): p for p in record_files(args.results)}
        for path, r in out.values():
            write_record(files[path], r)
        print(f"rewrote {len(out)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
