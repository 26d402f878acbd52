"""Time a benchmark's whole default grid with the real console command, in three states.

    python benchmarks/perf_default_run.py [--benchmark digits|mnist1d] [-- extra `unlearn run` options]

1. cold: empty workspace, so original models, oracles and forget sets are built
   (targets on 2 CPU cores: digits, 17 methods × 2 forget sets × 3 seeds, < 2 min;
   mnist1d, 17 methods × 4 forget sets × 5 seeds, < 10 min);
2. cached models: records deleted, models cached, so every method runs again;
3. all finished: every record exists, so every cell is skipped.
Each state runs in a fresh process, as a user would. Extra options after `--` go to
`unlearn run` (e.g. `-- --executor process --jobs 2`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLD_TARGET_S = {"digits": 120, "mnist1d": 600}


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="digits", help="benchmark whose default grid runs (default: digits)")
    parser.add_argument("extra", nargs="*", help="further `unlearn run` options, after --")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="unlearn-perf-"))
    cmd = [sys.executable, "-m", "unlearn", "run", "--benchmark", args.benchmark, "--workdir", str(work),
           "--no-progress", *args.extra]
    try:
        cold = timed(cmd)
        shutil.rmtree(work / "data" / "runs")
        cached = timed(cmd)
        finished = timed(cmd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    target = COLD_TARGET_S.get(args.benchmark)
    name = f"{args.benchmark} grid{' ' + ' '.join(args.extra) if args.extra else ''}"
    print(f"{name}, cold (train originals, oracles, forget sets): {cold:6.1f} s"
          + (f"   (target < {target} s)" if target else ""))
    print(f"{name}, cached models (methods rerun):               {cached:6.1f} s")
    print(f"{name}, all records present (skipped):               {finished:6.1f} s")


if __name__ == "__main__":
    main()
