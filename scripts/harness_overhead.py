"""Where does the default digits grid's wall time go, and how much of it is the harness's own?

    python scripts/harness_overhead.py [--workdir DIR]

Runs the default `digits` grid in this process twice into fresh results directories: cold (an empty
model cache: original models and oracles are trained) and warm (models cached, every method runs
again). For each run it prints the wall time split into

- methods: the methods' own run times (the records' run times of cells that ran, without retrain);
- training: original models and oracles trained in this run (their build times in the model cache, where
  only `retrain` keeps its outputs);
- evaluation: every metric of every model scored (per metric below), including the oracle's and the
  original model's, which each (forget set, seed) group scores once;
- harness: the rest (planning, loading models and data, forget-set manifests, writing records).

The issue's overhead is evaluation + harness, as a share of the wall time (target: under 10 %).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.checkpoints import read_weights  # noqa: E402
from unlearn.device import configure_threads  # noqa: E402
from unlearn.harness import Grid, Workspace, load_kind, plan_grid  # noqa: E402
from unlearn.metrics.base import Metric  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402


@contextmanager
def metric_timer() -> Iterator[Counter]:
    """Seconds spent in each metric (by name) while the block runs."""
    seconds: Counter = Counter()
    call = Metric.__call__

    def timed(self: Metric, evaluation):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        try:
            return call(self, evaluation)
        finally:
            seconds[self.name] += time.perf_counter() - start

    Metric.__call__ = timed
    try:
        yield seconds
    finally:
        Metric.__call__ = call


def build_seconds(cache: Path, kind: str, since: float) -> float:
    """Build time of the `kind` models written to the model cache after `since` (a time.time())."""
    paths = [p for p in (cache / kind).glob("*.safetensors") if p.stat().st_mtime >= since]
    return sum(float(read_weights(p)[1].get("seconds", 0.0)) for p in paths)


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
            began = time.time()
            start = time.perf_counter()
            with metric_timer() as per_metric:
                task = load_kind(spec, workspace, torch.device("cpu"))
                records = Grid(plan, task, workspace).run().records
            wall = time.perf_counter() - start
            ran = [r for r in records if r.status == "ok" and not r.run_time_from_cache]
            methods = sum(r.run_time_s or 0.0 for r in ran if r.method != "retrain")
            training = build_seconds(root / "cache", "original", began) + build_seconds(root / "cache", "unlearned", began)
            evaluation = sum(per_metric.values())
            harness = wall - methods - training - evaluation
            print(f"{state}: {len(records)} cells in {wall:.1f} s")
            for name, seconds in (("methods", methods), ("training (originals, oracles)", training),
                                  ("evaluation", evaluation), ("harness", harness)):
                print(f"  {name:31s} {seconds:6.1f} s  {100 * seconds / wall:5.1f} %")
            print("  evaluation by metric: " + ", ".join(f"{k} {v:.1f} s" for k, v in per_metric.most_common()))
            print(f"  overhead (evaluation + harness): {100 * (evaluation + harness) / wall:.1f} % (target < 10 %)")


if __name__ == "__main__":
    main()
