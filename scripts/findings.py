"""The published findings this suite's methods come with, checked on seeds no spec was tuned on.

    python scripts/findings.py [--workdir DIR] [--only CLAIM,...] [--markdown FILE]

Every claim names the cells it needs. They run through the ordinary harness into
DIR/data/findings (resumable; the model cache is DIR/data/cache). A committed
leaderboard record of the very same cell (same config hash) is reused instead of
rerun, so the digits-ddpm cells, which take minutes each on a CPU, come from the
committed board. The seeds:
- digits was tuned on seeds 0, 1, 2 (validation data only), so its checks use seeds 10..14;
- mnist1d was tuned on seeds 100, 101, so its leaderboard seeds 0..3 are untuned;
- digits-ddpm keeps the reference hyperparameters (nothing tuned): its seeds 0, 1, 2.

Every comparison is paired by seed (both models of a seed share the original model and
the forget set). A comparison *holds* when the claimed direction is significant
(scipy.stats.ttest_rel, two-sided, p < 0.05) and any stated margin is met, *does not hold* when the
opposite direction is significant or the margin is clearly missed, and is *inconclusive* otherwise. A claim
holds when all its comparisons hold, does not hold when any does not, and is inconclusive
otherwise. Nothing here is tuned on these seeds; a finding that fails is reported as such.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.harness import Grid, Workspace, load_kind, plan_grid  # noqa: E402
from unlearn.leaderboard.stats import paired_p  # noqa: E402
from unlearn.results import ORACLE, ResultRecord, record_dir  # noqa: E402
from unlearn.spec import REPO_ROOT, load_benchmark  # noqa: E402

ALPHA = 0.05
HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"
BOARD = REPO_ROOT / "leaderboard" / "results"
SEEDS = {"digits": (10, 11, 12, 13, 14), "mnist1d": (0, 1, 2, 3), "digits-ddpm": (0, 1, 2)}
APPROXIMATE = ("finetune", "grad-ascent", "neggrad-plus", "random-label", "salun", "salun-soft", "l1-sparse",
               "boundary-shrink", "boundary-expanding", "influence", "eu-k", "cf-k", "scrub", "bad-teacher", "ssd",
               "amnesiac")
REMOVED_WITHIN = 5.0
"""docs/forget-sets.md's margin: a method removes the manipulation when its ASR is within this of the ideal oracle's."""
TA_WITHIN = 10.0
"""... while its TA stays within this of the ideal oracle's (the margins of scripts/corrective.py)."""
CORRECTIVE_METHODS = ("finetune", "grad-ascent", "neggrad-plus", "random-label", "salun", "l1-sparse",
                      "boundary-shrink", "scrub", "ssd", "bad-teacher", "amnesiac")


@dataclass
class Comparison:
    """One paired comparison across seeds: `a` should be below `b` by more than `margin` (or above, if `higher`)."""

    setting: str
    a: list[float]
    b: list[float]
    higher: bool = False
    margin: float = 0.0
    detail: bool = False
    """Printed for context; the claim's verdict does not count it."""

    @property
    def diff(self) -> float:
        return statistics.fmean(x - y for x, y in zip(self.a, self.b, strict=True))

    @property
    def p(self) -> float:
        """The leaderboard's paired test (`paired_p`: constant differences decide, fewer than 2 seeds give nan)."""
        p = paired_p(self.a, self.b)
        return float("nan") if p is None else p

    @property
    def verdict(self) -> str:
        claimed = self.diff > self.margin if self.higher else self.diff < -self.margin
        opposite = self.diff < 0 if self.higher else self.diff > 0
        if self.p < ALPHA and claimed:
            return HOLDS
        if self.p < ALPHA and opposite:
            return FAILS
        return UNSURE

    def line(self) -> str:
        mean_a, mean_b = statistics.fmean(self.a), statistics.fmean(self.b)
        return (f"  {self.verdict:<14} {self.setting:<58} {mean_a:7.2f} vs {mean_b:7.2f}  "
                f"diff {self.diff:+7.2f}  p {self.p:.3g}  (n={len(self.a)})")


@dataclass
class Claim:
    key: str
    source: str
    statement: str
    check: Callable[[Cells], list[Comparison]]
    notes: list[str] = field(default_factory=list)

    def verdict(self, comparisons: Sequence[Comparison]) -> str:
        verdicts = {c.verdict for c in comparisons if not c.detail}
        if verdicts == {HOLDS}:
            return HOLDS
        return FAILS if FAILS in verdicts else UNSURE


class Cells:
    """Records of the cells the claims need, run (or reused) on demand, one grid per call."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.results = workdir / "data" / "findings"
        self.records: list[ResultRecord] = []

    def need(self, benchmark: str, methods: Sequence[str], forgets: Sequence[str]) -> None:
        spec = load_benchmark(benchmark)
        plan = plan_grid(spec, [ORACLE, *methods], list(forgets), list(SEEDS[benchmark]))
        workspace = Workspace.at(self.workdir, results_dir=self.results)
        task = load_kind(spec, workspace, torch.device("cpu"))
        for choice in plan.methods:  # offer the committed records; the runner reuses those of the very same config
            for forget in plan.forgets:
                folder = record_dir(self.results, benchmark, choice.name, forget.text)
                committed = BOARD / folder.relative_to(self.results)
                for seed in plan.seeds:
                    for path in committed.glob(f"seed{seed}-*.json"):
                        if not (folder / path.name).exists():
                            folder.mkdir(parents=True, exist_ok=True)
                            shutil.copyfile(path, folder / path.name)
        task.check(plan.forgets, plan.methods)
        runner = Grid(plan, task, workspace, progress=True)
        self.records += [r for r in runner.run().records if r.status == "ok"]

    def values(self, benchmark: str, forget: str, method: str, key: str, where: str = "metrics") -> dict[int, float]:
        """Seed -> a metric of `method` (`where` = metrics, gaps, oracle_metrics, ...), for the seeds that finished."""
        return {r.seed: getattr(r, where)[key] for r in self.records
                if (r.benchmark, r.forget.spec, r.method) == (benchmark, forget, method)}


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[list[float], list[float]]:
    """The values of the seeds both finished (a failed cell leaves its seed out of that comparison)."""
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


def salun_closest(cells: Cells) -> list[Comparison]:
    settings = [("digits", "random:0.1"), ("digits", "class:3"), ("mnist1d", "random:0.1"), ("mnist1d", "random:0.5"),
                ("mnist1d", "class:3")]
    for benchmark in ("digits", "mnist1d"):
        cells.need(benchmark, ["salun", "random-label", "finetune"], [f for b, f in settings if b == benchmark])
    return [Comparison(f"{b} {f}: Avg. Gap salun vs {other}", *paired(cells.values(b, f, "salun", "Avg. Gap", "gaps"),
                                                                        cells.values(b, f, other, "Avg. Gap", "gaps")))
            for b, f in settings for other in ("random-label", "finetune")]


def worst_case_wider(cells: Cells) -> list[Comparison]:
    out = []
    for benchmark in ("digits", "mnist1d"):
        cells.need(benchmark, APPROXIMATE, ["random:0.1", "worst-case:0.1"])
        gaps = {(m, f): cells.values(benchmark, f, m, "Avg. Gap", "gaps") for m in APPROXIMATE
                for f in ("random:0.1", "worst-case:0.1")}
        complete = [m for m in APPROXIMATE if all(len(gaps[(m, f)]) == len(SEEDS[benchmark])
                                                  for f in ("random:0.1", "worst-case:0.1"))]
        left_out = f"; {', '.join(sorted(set(APPROXIMATE) - set(complete)))} left out (failed seeds)" * (
            len(complete) < len(APPROXIMATE))
        worst = [statistics.fmean(gaps[(m, "worst-case:0.1")][s] for m in complete) for s in SEEDS[benchmark]]
        rand = [statistics.fmean(gaps[(m, "random:0.1")][s] for m in complete) for s in SEEDS[benchmark]]
        out.append(Comparison(f"{benchmark}: mean Avg. Gap of {len(complete)} methods, worst-case vs random 10 %"
                              + left_out, worst, rand, higher=True))
        for m in complete:
            out.append(Comparison(f"  {benchmark} {m}: Avg. Gap worst-case vs random 10 %",
                                  *paired(gaps[(m, "worst-case:0.1")], gaps[(m, "random:0.1")]), higher=True,
                                  detail=True))
    return out


def probe_recovery(cells: Cells) -> list[Comparison]:
    out = []
    for benchmark in ("digits", "mnist1d"):
        cells.need(benchmark, ["random-label"], ["class:3"])
        out.append(Comparison(f"{benchmark} class:3: Probe-F random-label vs oracle (margin 10)",
                              *paired(cells.values(benchmark, "class:3", "random-label", "Probe-F"),
                                      cells.values(benchmark, "class:3", "random-label", "Probe-F", "oracle_metrics")),
                              higher=True, margin=10.0))
    return out


def corrective(cells: Cells) -> list[Comparison]:
    small, forgets = ("0.1", "0.25"), [f"corrective:poison:0.1:{f}" for f in ("0.1", "0.25")]
    cells.need("digits", CORRECTIVE_METHODS, forgets)
    out = [Comparison("digits poison 10 %, 10 % identified: ASR of the oracle vs the ideal oracle (margin 10)",
                      *paired(cells.values("digits", forgets[0], ORACLE, "ASR"),
                              cells.values("digits", forgets[0], ORACLE, "ASR", "ideal_oracle_metrics")), higher=True,
                      margin=10.0)]
    for fraction, forget in zip(small, forgets, strict=True):
        for other in CORRECTIVE_METHODS:
            if other != "ssd":
                out.append(Comparison(f"digits poison, {fraction} identified: ASR ssd vs {other}",
                                      *paired(cells.values("digits", forget, "ssd", "ASR"),
                                              cells.values("digits", forget, other, "ASR"))))
    return out


def corrective_docs(cells: Cells) -> list[Comparison]:
    """docs/forget-sets.md's own statements about corrective sets on digits (written from seeds 0–2), on 10..14."""
    poison = {f: f"corrective:poison:0.1:{f}" for f in ("0.1", "1")}
    confusion = "corrective:interclass:3-5:0.1"
    removers, keepers = ("finetune", "random-label", "salun", "l1-sparse", "ssd"), ("grad-ascent", "scrub",
                                                                                     "boundary-shrink")
    cells.need("digits", [*removers, *keepers], list(poison.values()))
    cells.need("digits", ["ssd", "random-label", "salun"], [confusion])

    def asr(forget: str, method: str, where: str = "metrics") -> dict[int, float]:
        return cells.values("digits", forget, method, "ASR", where)

    ideal = asr(poison["1"], ORACLE, "ideal_oracle_metrics")
    within = {s: v + REMOVED_WITHIN for s, v in ideal.items()}
    out = [Comparison(f"poison, 100 % identified: ASR {m} vs the ideal oracle's + {REMOVED_WITHIN:g}",
                      *paired(asr(poison["1"], m), within)) for m in removers]
    out += [Comparison(f"poison, 100 % identified: ASR {m} vs the ideal oracle's + {REMOVED_WITHIN:g} (above)",
                       *paired(asr(poison["1"], m), within), higher=True) for m in keepers]
    out += [Comparison(f"poison, 10 % identified: ASR {m} vs ssd", *paired(asr(poison["0.1"], m),
                                                                          asr(poison["0.1"], "ssd")))
            for m in ("random-label", "salun")]
    out.append(Comparison("poison, 10 % identified: ASR ssd vs the original's (detail)",
                          *paired(asr(poison["0.1"], "ssd"), asr(poison["0.1"], "ssd", "original_metrics")),
                          detail=True))
    out.append(Comparison("interclass 3-5, 10 % identified: ASR ssd vs the original's",
                          *paired(asr(confusion, "ssd"), asr(confusion, "ssd", "original_metrics"))))
    ta = cells.values("digits", confusion, "ssd", "TA")
    ideal_ta = {s: v - TA_WITHIN for s, v in cells.values("digits", confusion, ORACLE, "TA",
                                                             "ideal_oracle_metrics").items()}
    out.append(Comparison(f"interclass 3-5, 10 % identified: TA ssd vs the ideal oracle's − {TA_WITHIN:g} (wrecked)",
                          *paired(ta, ideal_ta)))
    for m in ("random-label", "salun"):
        half = {s: v / 2 for s, v in asr(confusion, m, "original_metrics").items()}
        out.append(Comparison(f"interclass 3-5, 10 % identified: ASR {m} vs half the original's",
                              *paired(asr(confusion, m), half)))
    return out


def generation(cells: Cells) -> list[Comparison]:
    cells.need("digits-ddpm", ["diffusion-salun", "sfd"], ["class:3"])
    out = []
    for method in ("diffusion-salun", "sfd"):
        ua = list(cells.values("digits-ddpm", "class:3", method, "UA").values())
        out.append(Comparison(f"digits-ddpm class:3: {method} UA vs 90 (near 100)", ua, [90.0] * len(ua), higher=True))
        acc, before = paired(cells.values("digits-ddpm", "class:3", method, "Acc-r"),
                             cells.values("digits-ddpm", "class:3", method, "Acc-r", "original_metrics"))
        out.append(Comparison(f"digits-ddpm class:3: {method} Acc-r vs original's − 5", acc, [v - 5 for v in before],
                              higher=True))
    return out


CLAIMS = [
    Claim("salun", "Fan et al. 2024 (SalUn), Table 1/2",
          "SalUn's Avg. Gap is below random-label's and finetune's on random and class-wise forgetting.", salun_closest),
    Claim("worst-case", "Fan et al. 2024 (worst-case forget sets)",
          "Worst-case forget sets widen the gaps of approximate methods relative to random sets of the same size.",
          worst_case_wider),
    Claim("probe", "probe-recovery studies of relabelling methods",
          "Random-label forgetting leaves the class linearly decodable: its probe recovery is far above the oracle's.",
          probe_recovery),
    Claim("corrective", "Goel et al. 2024 (corrective unlearning)",
          "Retraining without 10 % of the poison leaves the backdoor, and SSD does better than the other methods at "
          "small identified fractions.", corrective),
    Claim("corrective-docs", "docs/forget-sets.md (written from seeds 0-2)",
          "With every poisoned sample identified, finetune, random-label, SalUn, l1-sparse and SSD bring the ASR within "
          "5 points of the ideal oracle, and grad-ascent, SCRUB and boundary-shrink do not; at 10 % identified "
          "random-label and SalUn lower the ASR more than SSD; on interclass 3-5, SSD lowers the ASR only by wrecking "
          "TA, and random-label and SalUn halve it.", corrective_docs),
    Claim("generation", "Fan et al. 2024 (SalUn) and Chen et al. 2025 (SFD)",
          "SalUn on the DDPM and SFD drive the judge's UA on the forgotten class near 100 while the other classes "
          "keep their judge accuracy.", generation),
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where data/findings and data/cache live")
    parser.add_argument("--only", default="", help=f"comma-separated claims ({', '.join(c.key for c in CLAIMS)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    chosen = [c for c in CLAIMS if not args.only or c.key in args.only.split(",")]
    cells = Cells(args.workdir)
    summary = []
    for claim in chosen:
        comparisons = claim.check(cells)
        verdict = claim.verdict(comparisons)
        summary.append((claim, verdict))
        print(f"\n[{claim.key}] {claim.statement}\n  source: {claim.source}\n  verdict: {verdict.upper()}")
        for c in comparisons:
            print(c.line())
    print("\nSummary")
    for claim, verdict in summary:
        print(f"  {claim.key:<12} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
