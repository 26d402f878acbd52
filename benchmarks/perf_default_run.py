"""Time the default `unlearn run` (digits: 17 methods × 2 forget sets × 3 seeds) in three states.

    python benchmarks/perf_default_run.py

1. cold: empty workspace, so original models and oracles are trained (target < 2 min on 2 CPU cores);
2. cached models: records deleted, models cached, so every method runs again (target < 60 s);
3. all finished: every record exists, so every cell is skipped.
Each state runs the real console command in a fresh process, as a user would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="unlearn-perf-"))
    cmd = [sys.executable, "-m", "unlearn", "run", "--workdir", str(work), "--no-progress"]
    try:
        cold = timed(cmd)
        shutil.rmtree(work / "data" / "runs")
        cached = timed(cmd)
        finished = timed(cmd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"default grid, cold (train originals and oracles): {cold:6.1f} s   (target < 120 s)")
    print(f"default grid, cached models (methods rerun):      {cached:6.1f} s   (target < 60 s)")
    print(f"default grid, all records present (skipped):      {finished:6.1f} s")


if __name__ == "__main__":
    main()
