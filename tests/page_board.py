"""A small hand-made leaderboard for the page and plot tests: two benchmarks written in tmp, never the repo's board.

digits (class:3, every classification method of the grid, two seeds, wide-interval scores) and digits-ddpm
(class:3, three generation methods, two seeds) with the columns their real records have. The scores are drawn from
a seeded generator, so the board is the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unlearn.provenance import environment
from unlearn.results import ForgetInfo, ResultRecord, record_path, write_record

DIGITS_METHODS = ("eu-k", "finetune", "ssd", "amnesiac", "cf-k", "random-label", "salun-soft", "salun", "l1-sparse",
                  "boundary-expanding", "scrub", "bad-teacher", "boundary-shrink", "influence", "grad-ascent",
                  "neggrad-plus")
DDPM_METHODS = ("diffusion-finetune", "esd", "sfd")
SPECS = {
    "digits": dict(metrics=["accuracy", "mia-efficacy", "probe", "relearn"], gap_metrics=["UA", "RA", "TA", "MIA-Efficacy"],
                   report_metrics=["Probe-F", "Recovery-Gap", "Relearn-Steps"], methods=DIGITS_METHODS,
                   extra=("Probe-F", "Recovery-Gap", "Relearn-FA", "Relearn-Steps")),
    "digits-ddpm": dict(metrics=["generation", "generality"], gap_metrics=["UA", "Acc-r"],
                        report_metrics=["P-f", "Entropy-f", "FD", "UA-near", "Samples/s"], methods=DDPM_METHODS,
                        extra=("P-f", "Entropy-f", "FD", "UA-near", "Samples/s")),
}
SEEDS = (0, 1)


def _scores(keys, rng: np.random.Generator, spread: float) -> dict[str, float]:
    return {k: float(np.clip(90.0 + rng.normal(0.0, spread), 0.0, 100.0)) for k in keys}


def make_board(root: Path) -> Path:
    """Write the board's records under ROOT/results and return ROOT (a leaderboard directory to render)."""
    rng = np.random.default_rng(0)
    env = environment(torch.device("cpu"))
    for benchmark, spec in SPECS.items():
        keys = [*spec["gap_metrics"], *spec["extra"]]
        config = {k: spec[k] for k in ("metrics", "gap_metrics", "report_metrics")}
        for seed in SEEDS:
            oracle, original = _scores(keys, rng, 3.0), _scores(keys, rng, 30.0)
            for i, method in enumerate(("retrain", *spec["methods"])):
                scores = oracle if method == "retrain" else _scores(keys, rng, 3.0 + 4.0 * i)
                gaps = {k: abs(scores[k] - oracle[k]) for k in spec["gap_metrics"]}
                gaps["Avg. Gap"] = float(np.mean(list(gaps.values())))
                config_hash = f"{seed:02d}{i:02d}" + "0" * 60
                record = ResultRecord(
                    status="ok", benchmark=benchmark, method=method, method_origin="builtin", hparams={},
                    track="full", forget=ForgetInfo(spec="class:3", sha256="0" * 64, size=1, forgotten_classes=[3]),
                    seed=seed, config={"benchmark": benchmark, **config}, config_hash=config_hash, metrics=scores,
                    oracle_metrics=oracle, original_metrics=original, gaps=gaps, run_time_s=1.0 + i, models={},
                    env=env,
                )
                write_record(record_path(root / "results", benchmark, method, "class:3", seed, config_hash), record)
    return root
