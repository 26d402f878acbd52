"""How much of the default digits grid's wall time is the harness's own (loading, evaluation, records)?

    python benchmarks/harness_overhead.py [--workdir DIR]

Runs the default `digits` grid in this process twice into fresh results directories: cold (an empty
model cache: original models and oracles are trained) and warm (models cached, every method runs
again). Prints the wall time of each, the methods' own time (the records' run times of cells that ran),
the training time of original models and oracles (cold only) and the rest: the harness's overhead share.
Target: under 10 % warm.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.device import configure_threads  # noqa: E402
from unlearn.harness import Workspace, load_task, make_runner, plan_grid  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="keep the model cache here (default: a temporary directory)")
    args = parser.parse_args()
    spec = load_benchmark("digits")
    configure_threads(torch.device("cpu"), spec.cpu_threads or 1)
    plan = plan_grid(spec)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        for state in ("cold", "warm"):
            workspace = Workspace.at(root / state, cache_dir=root / "cache")
            task = load_task(spec, workspace, torch.device("cpu"))
            start = time.perf_counter()
            records = make_runner(plan, task, workspace).run().records
            wall = time.perf_counter() - start
            ran = [r for r in records if r.status == "ok" and not r.run_time_from_cache]
            methods = sum(r.run_time_s or 0.0 for r in ran if r.method != "retrain")
            trained = [r for r in records if r.status == "ok" and r.method == "retrain"] if state == "cold" else []
            oracles = sum(r.run_time_s or 0.0 for r in trained)  # built in this run (the record holds the build time)
            models = len(list((root / "cache" / "original").glob("*.safetensors")))
            rest = wall - methods - oracles
            print(f"{state}: {len(records)} cells in {wall:.1f} s; methods {methods:.1f} s, oracles trained "
                  f"{oracles:.1f} s ({models} original models cached), harness and original-model training "
                  f"{rest:.1f} s = {100 * rest / wall:.1f} %")


if __name__ == "__main__":
    main()
