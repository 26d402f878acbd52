"""Per-example scores on digits: the ε score (NeurIPS 2023 competition) and U-LiRA, from banks of N models.

    python scripts/epsilon_bank.py [--n 64] [--forget random:0.1] [--seed 0] [--methods ...] [--workdir DIR]

For one cell it trains (or loads from the workdir's cache) the oracle bank (N retrained
oracles), a bank of N runs per method and N unlearned shadows per method, then prints per
row: Epsilon-F, the final score (F × RA ratio × TA ratio), U-LiRA attack accuracy
(50 % = indistinguishable), N, and the time the banks took. The `retrain` row is the
ceiling the benchmark can resolve at this N (an independent retrain bank against the
oracle bank); the original row (no unlearning: N copies of the original model) scores 0
by the competition's range rule; the methods land in between. Default: N = 64.
With --originals independent, run i of every method starts from an original model
trained at seed i, and the original row is N independently trained originals.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.harness import Grid, Workspace, load_kind, plan_grid  # noqa: E402
from unlearn.leaderboard import format_text, summarize  # noqa: E402
from unlearn.spec import BankSettings, EvaluationSettings, load_benchmark  # noqa: E402

METRICS = ["accuracy", "mia-efficacy", "epsilon", "ulira"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="models per bank and shadows per method (default: 64)")
    parser.add_argument("--forget", default="random:0.1", help="forget set (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="cell seed (default: 0)")
    parser.add_argument("--methods", default="retrain,random-label,salun,grad-ascent,ssd,boundary-expanding,amnesiac",
                        help="comma-separated methods (default: %(default)s)")
    parser.add_argument("--mode", default="auto", choices=["auto", "sequential", "vmap", "process"],
                        help="how oracle banks are trained (default: auto, by measurement)")
    parser.add_argument("--originals", default="shared", choices=["shared", "independent"],
                        help="method runs start from the cell's original (shared, as the competition) or run i from "
                        "an original trained at seed i (independent); default: %(default)s")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where the model cache lives (data/cache)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = load_benchmark("digits")
    evaluation = EvaluationSettings(bank=BankSettings(size=args.n, mode=args.mode, originals=args.originals))
    spec = base.model_copy(update={"metrics": METRICS, "evaluation": evaluation,
                                   "report_metrics": ["Epsilon-F", "Epsilon-Score", "U-LiRA"]})
    methods = [m for m in args.methods.split(",") if m]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace.at(args.workdir, results_dir=Path(tmp))
        plan = plan_grid(spec, methods, [args.forget], [args.seed])
        task = load_kind(spec, workspace, torch.device("cpu"))
        task.check(plan.forgets, plan.methods)
        records = Grid(plan, task, workspace, progress=True, log=print).run().records
    failed = [r for r in records if r.status != "ok"]
    for r in failed:
        print(f"{r.method}: FAILED ({r.error})")
    columns = ["UA", "RA", "TA", "Epsilon-F", "Epsilon-Score", "U-LiRA", "Epsilon-N"]
    print(format_text(summarize([r for r in records if r.status == "ok"], columns)))
    print("\nbanks (seconds; how):")
    for r in records:
        if r.status == "ok":
            eps, ulira = r.metric_info["epsilon"], r.metric_info["ulira"]
            print(f"  {r.method:20s} method bank {eps['method_bank']['seconds']:8.1f} s ({eps['method_bank']['how']}); "
                  f"median ε {eps['median_epsilon']:.2f}, {eps['examples_at_cap']}/{eps['n_examples']} examples at "
                  f"ε = 50; shadows {ulira['shadow_seconds']:7.1f} s; U-LiRA ± {ulira['stderr'] or 0:.2f} "
                  f"over {ulira['n_targets']} targets, {ulira['n_skipped']} examples skipped")
    first = next(r for r in records if r.status == "ok")
    print(f"  oracle bank: {first.metric_info['epsilon']['oracle_bank']['seconds']:.1f} s "
          f"({first.metric_info['epsilon']['oracle_bank']['how']})")
    print(f"total {time.perf_counter() - start:.0f} s for N = {args.n}")


if __name__ == "__main__":
    main()
