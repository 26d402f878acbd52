"""Time a benchmark's whole default grid with the real console command, in three states.

    python scripts/perf_default_run.py [--benchmark digits|mnist1d] [-- extra `unlearn run` options]

1. cold: empty workspace, so original models, oracles and forget sets are built
   (targets on 2 CPU cores: digits, 17 methods × 2 forget sets × 3 seeds, < 2 min;
   mnist1d, 17 methods × 4 forget sets × 5 seeds, < 10 min);
2. cached models: records deleted, models cached, so every method runs again;
3. all finished: every record exists, so every cell is skipped.
Each state runs in a fresh process, as a user would. Extra options after `--` go to
`unlearn run` (e.g. `-- --executor process --jobs 2`). Each line gives wall time and CPU time
(user + system of the command and its workers): on a shared machine the wall time grows with
the load, the CPU time much less, so the README quotes CPU time and the machine it was measured on.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLD_TARGET_S = {"digits": 120, "mnist1d": 600}


def timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of running `args` to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def machine() -> str:
    """The CPU model, its core count and the load when measuring (the figures depend on all three)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model}, {os.cpu_count()} cores, load average {load:.1f} at the start"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="digits", help="benchmark whose default grid runs (default: digits)")
    parser.add_argument("extra", nargs="*", help="further `unlearn run` options, after --")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="unlearn-perf-"))
    cmd = [sys.executable, "-m", "unlearn", "run", "--benchmark", args.benchmark, "--workdir", str(work),
           "--no-progress", *args.extra]
    print(f"machine: {machine()}")
    try:
        cold = timed(cmd)
        shutil.rmtree(work / "data" / "runs")
        cached = timed(cmd)
        finished = timed(cmd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    target = COLD_TARGET_S.get(args.benchmark)
    name = f"{args.benchmark} grid{' ' + ' '.join(args.extra) if args.extra else ''}"
    print(f"{name}, cold (train originals, oracles, forget sets): {cold[0]:6.1f} s wall, {cold[1]:6.1f} s CPU"
          + (f"   (wall target < {target} s)" if target else ""))
    print(f"{name}, cached models (methods rerun):               {cached[0]:6.1f} s wall, {cached[1]:6.1f} s CPU")
    print(f"{name}, all records present (skipped):               {finished[0]:6.1f} s wall, {finished[1]:6.1f} s CPU")


if __name__ == "__main__":
    main()
