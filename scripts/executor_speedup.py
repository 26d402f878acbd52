"""Speed-up of the process pool and of Ray over a serial run of a digits grid, and where the time goes.

    python scripts/executor_speedup.py                 # the default grid: 17 methods x 2 forget sets x 3 seeds
    python scripts/executor_speedup.py --seeds 0 --cold

Each run is a fresh Python process, as `unlearn run` is, writing into a fresh results directory; its wall
time is that of `Grid.run` (the pool's or Ray's start and stop included; the interpreter's own imports and
the parent's dataset loading, the same for every executor, are not). With models cached (trained by a first
serial run into a cache the cached runs share) every cell's method runs again; --cold adds a serial run and
a process-pool run on empty caches of their own (original models and oracles trained). Ray runs on a local
instance of --jobs CPUs. A last serial run shows how much the machine's load drifted meanwhile. All runs must give the same records (run time and environment aside); the script
checks that. On 2 cores expect at most 2x: workers pay their start-up and one group setup per unit, and
anything else running on the machine takes its share of the cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def import_seconds() -> float:
    """What a fresh interpreter takes to import the harness (most of a spawned or Ray worker's start-up)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import unlearn.harness"], check=True)
    return time.perf_counter() - start


def one_run(args: argparse.Namespace) -> None:
    """Run the grid once with `args.run` (in this fresh process) and print its wall time and stats as JSON."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from unlearn.device import resolve_device
    from unlearn.executors import make_executor
    from unlearn.harness import Grid, Workspace, load_kind, plan_grid
    from unlearn.spec import load_benchmark

    torch.set_num_threads(1)  # as the CLI does for digits (cpu_threads: 1); workers get the same
    spec = load_benchmark(args.benchmark)
    plan = plan_grid(spec, args.methods.split(",") if args.methods else None,
                     args.forget.split(",") if args.forget else None,
                     [int(s) for s in args.seeds.split(",")] if args.seeds else None)
    workspace = Workspace.at(args.results, cache_dir=args.cache)
    task = load_kind(spec, workspace, resolve_device("cpu"))
    executor = make_executor(args.run, None if args.run == "serial" else args.jobs)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = Grid(plan, task, workspace).run(executor)
    wall = time.perf_counter() - start
    records = [r.model_dump(mode="json", exclude={"run_time_s", "env"}) for r in result.records]
    s = executor.stats
    print(json.dumps({
        "wall": wall, "cells": plan.size, "failed": sum(r.status == "failed" for r in result.records),
        "digest": hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest(),
        "startup": s.startup, "spawn": s.spawn, "setup": s.setup, "groups": s.groups, "cell_seconds": s.cells,
        "units": s.units, "workers": len(s.workers), "deaths": s.deaths, "load": [load_before, os.getloadavg()[0]],
    }))


def report(label: str, run: dict[str, Any], baseline: float | None) -> None:
    """Print a run's wall time, speed-up and where its workers' time went."""
    wall = run["wall"]
    speedup = f"{baseline / wall:4.2f}x" if baseline else "  —  "
    print(f"{label:<30} {wall:7.1f} s for {run['cells']} cells   speed-up {speedup}   "
          f"(load average {run['load'][0]:.1f} before, {run['load'][1]:.1f} after)")
    groups, cells, setup = sum(run["groups"]), sum(run["cell_seconds"]), sum(run["setup"])
    workers = max(1, run["workers"])
    if run["startup"] or run["spawn"]:
        ready = f"; workers answered after {max(run['spawn']):.1f} s at most" if run["spawn"] else ""
        print(f"    start-up      {run['startup']:6.1f} s in the parent (pool or Ray instance){ready}")
    if setup:
        print(f"    worker setup  {setup:6.1f} s over {len(run['setup'])} workers (imports, dataset, runner)")
    print(f"    group setup   {groups:6.1f} s over {run['units']} units (original + oracle loaded or trained, scored)")
    print(f"    cells         {cells:6.1f} s over {len(run['cell_seconds'])} cells (method, scoring, record)")
    busy = groups + cells + setup
    print(f"    busy          {100 * busy / (wall * workers):5.1f} % of {workers} worker(s) x wall; the rest: start-up, "
          "idle workers at the end, Ray's scheduling and stop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="digits")
    parser.add_argument("--methods", help="comma-separated (default: the benchmark's grid)")
    parser.add_argument("--forget", help="comma-separated (default: the benchmark's grid)")
    parser.add_argument("--seeds", help="comma-separated (default: the benchmark's grid)")
    parser.add_argument("--jobs", type=int, default=2, help="workers of the pool and CPUs of the Ray instance")
    parser.add_argument("--cold", action="store_true", help="also time serial and the pool on empty caches")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one run in this process
    parser.add_argument("--results", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return one_run(args)

    root = Path(tempfile.mkdtemp(prefix="unlearn-executors-"))
    grid = [f"--{k}={v}" for k, v in (("benchmark", args.benchmark), ("methods", args.methods),
                                      ("forget", args.forget), ("seeds", args.seeds), ("jobs", args.jobs)) if v]
    runs: dict[str, dict[str, Any]] = {}

    def timed(label: str, name: str, cache: Path, baseline: float | None) -> float:
        command = [sys.executable, __file__, *grid, f"--run={name}", f"--results={root / f'run{len(runs)}'}",
                   f"--cache={cache}"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
        runs[label] = run = json.loads(done.stdout.strip().splitlines()[-1])
        if run["failed"]:
            raise SystemExit(f"{label}: {run['failed']} cells failed")
        report(label, run, baseline)
        return run["wall"]

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"unlearn run {' '.join(grid)}: {os.cpu_count()} CPUs, 1 torch thread per process; "
          f"load average {load:.1f} before the runs (other jobs on the machine take their share)")
    print(f"a fresh interpreter imports unlearn.harness in {import_seconds():.1f} s\n")
    warm = root / "cache"
    if args.cold:
        serial_cold = timed("serial, cold cache", "serial", warm, None)  # fills `warm`
        timed("process pool, cold cache", "process", root / "cold-process-cache", serial_cold)
    else:
        timed("serial, filling the cache", "serial", warm, None)
    serial = timed("serial, models cached", "serial", warm, None)
    timed(f"process pool of {args.jobs}, cached", "process", warm, serial)
    if not args.no_ray:
        timed(f"Ray local ({args.jobs} CPUs), cached", "ray", warm, serial)
    timed("serial again (drift check)", "serial", warm, None)
    runs_digest = {run["digest"] for run in runs.values()}
    print(f"\nevery run gave the same records (run time and environment aside): {'yes' if len(runs_digest) == 1 else 'NO'}")
    if len(runs_digest) != 1:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
