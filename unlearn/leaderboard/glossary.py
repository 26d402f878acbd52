"""What each leaderboard column means, keyed by the metric that produces it, and where the docs define it.

One key can mean different things under different metrics (UA is 100 − forget accuracy for a classifier, and
the judge's verdict on generated samples for a diffusion model), so a benchmark's columns are looked up under the
metrics its records list first. `tests/test_page_browser.py` checks that every key a built-in metric produces
has an entry here. Doc paths are relative to the repository root.
"""

from __future__ import annotations

from collections.abc import Sequence

from unlearn.leaderboard.tables import AVG_GAP, DEPTH_METRICS, HIGHER_IS_BETTER, LOWER_IS_BETTER, ROBUST_GAP, RUN_TIME

METRICS_DOC = "docs/metrics.md"
MIA = f"{METRICS_DOC}#membership-inference-population-attacks"
PROBE = f"{METRICS_DOC}#probe-recovery-probe"
RELEARN = f"{METRICS_DOC}#relearn-attack-relearn"
BANKS = f"{METRICS_DOC}#per-example-scores-on-banks-of-models"
GENERATION = "docs/generation.md#metrics-unlearnmetricsgenerationpy"
DIVERSITY = f"{METRICS_DOC}#diversity-of-generated-samples-diversity-div-r-coverage-r"
MEMORIZATION = "docs/generation.md#memorisation-planted-images"
CONTINUAL = "docs/continual.md#metrics-after-every-task"
LANGUAGE = "docs/language.md#the-protocol"
GAPS = f"{METRICS_DOC}#avg-gap-and-robust-gap"


def _mia(feature: str) -> tuple[str, str]:
    return f"% of the forget set a membership-inference attack on {feature} calls non-member", MIA


COLUMNS: dict[str, dict[str, tuple[str, str | None]]] = {
    "accuracy": {
        "UA": ("unlearning accuracy: 100 − accuracy on the forget set, %", METRICS_DOC),
        "RA": ("accuracy on the retain set, %", METRICS_DOC),
        "TA": ("accuracy on the test set (for class-wise forgetting: its remaining classes), %", METRICS_DOC),
        "VA": ("accuracy on the validation split, %", METRICS_DOC),
    },
    "mia-efficacy": {"MIA-Efficacy": _mia("the true-label confidence (SalUn's SVC)")},
    "mia-efficacy-val": {"MIA-Efficacy-val": _mia("the confidence, with validation images as non-members")},
    "mia-correctness": {"MIA-Correctness": _mia("correctness")},
    "mia-entropy": {"MIA-Entropy": _mia("the prediction entropy")},
    "mia-m-entropy": {"MIA-M-Entropy": _mia("the modified entropy")},
    "mia-prob": {"MIA-Prob": _mia("the softmax vector")},
    "mia-lr-entropy": {"MIA-LR-Entropy": ("% of the forget set a logistic regression on entropy calls member", MIA)},
    "mia-loss": {"MIA-Loss": _mia("a loss threshold")},
    "probe": {
        "Probe-F": ("a few-shot linear probe's accuracy on held-out forgotten samples, read from the frozen "
                    "penultimate features, %", PROBE),
        "Probe-F-Block": ("the same probe on an earlier block's features, %", PROBE),
        "Recovery-Gap": ("Probe-F of the model − Probe-F of the oracle, points", PROBE),
        "Recovery-Gap-Block": ("the same on the earlier block, points", PROBE),
    },
    "relearn": {
        "Relearn-FA": ("forget accuracy after a few fine-tuning steps on 10 % of the forget set, %", RELEARN),
        "Relearn-Steps": ("fine-tuning steps until forget accuracy is back within a point of the original's",
                          RELEARN),
    },
    "corrective": {
        "Manip-Acc": ("accuracy on the manipulated test images with their true labels, %",
                      f"{METRICS_DOC}#corrective-unlearning-corrective"),
        "ASR": ("attack success rate: % of those images predicted as the manipulation wants",
                f"{METRICS_DOC}#corrective-unlearning-corrective"),
    },
    "epsilon": {
        "Epsilon-F": ("the NeurIPS 2023 competition's forgetting quality F from banks of models", BANKS),
        "Epsilon-Score": ("F × retain-accuracy ratio × test-accuracy ratio", BANKS),
        "Epsilon-N": ("models per bank", BANKS),
    },
    "ulira": {
        "U-LiRA": ("U-LiRA attack accuracy on unlearned shadow models, % (50: indistinguishable)", BANKS),
        "U-LiRA-N": ("shadow models", BANKS),
    },
    "generation": {
        "UA": ("100 − % of forget-class samples the judge classifier assigns to the forgotten class", GENERATION),
        "P-f": ("the judge's mean probability of the forgotten class on forget-class samples, %", GENERATION),
        "Entropy-f": ("the judge's mean entropy on forget-class samples, nats", GENERATION),
        "Acc-r": ("the judge's accuracy on samples of the remaining classes, %", GENERATION),
        "FD": ("Fréchet distance between judge features of generated and real remaining-class images", GENERATION),
        "Samples/s": ("sampling throughput with the benchmark's pinned sampler settings", GENERATION),
    },
    "diversity": {
        "Div-r": ("mean pairwise distance of the judge features of each remaining class's samples over the real images'; "
                  "1 = as diverse as the data, 0 = one image per class", DIVERSITY),
        "Coverage-r": ("% of each remaining class's real images with a sample inside their k-nearest-neighbour ball of "
                       "judge features (Naeem et al.'s coverage; k = 5 unless the spec says)", DIVERSITY),
    },
    "generality": {
        "UA-near": ("UA on conditions between the forgotten class's label embedding and each remaining class's",
                    GENERATION),
        "UA-shell": ("UA on random conditions at fixed cosines from the forgotten class's label embedding "
                     "(RealEra's concept residue)", "docs/metrics.md#generality-of-a-forgotten-class-generality-ua-near-ua-shell"),
    },
    "memorization": {
        "Extraction": ("% of samples of the planted conditions whose nearest training image is a planted one within "
                       "the threshold", MEMORIZATION),
        "Planted-dist": ("median RMS pixel distance from those samples to the nearest planted image", MEMORIZATION),
    },
    "pruned": {"Pruned": ("% of the model's weights that are exactly zero in it but not in the original", MEMORIZATION)},
    "lm-forgetting": {
        "Acc-f": ("accuracy on the forget items (two choices: 50 is chance), %", LANGUAGE),
        "Acc-h": ("accuracy on the forgotten task's unseen test items, %", LANGUAGE),
        "Gap-f": ("forget gap on the forget items: Acc-f − 50, points", LANGUAGE),
        "Gap-h": ("forget gap on the task's unseen items: Acc-h − 50, points", LANGUAGE),
        "Ratio-f": ("forget ratio on the forget items: (original − Acc-f) / (original − 50); 1 = chance", LANGUAGE),
        "Ratio-h": ("forget ratio on the task's unseen items; 1 = chance, 0 = nothing forgotten", LANGUAGE),
    },
    "lm-tasks": {"Acc-o": ("accuracy on the other tasks' test items, %", LANGUAGE)},
    "lm-probe": {
        "Probe": ("linear probes' two-choice accuracy on the task's unseen items, mean over the blocks, %", LANGUAGE),
        "Probe-Δorig": ("Probe − the original model's Probe, points", LANGUAGE),
        "Probe-Δoracle": ("Probe − the oracle's Probe, points", LANGUAGE),
    },
    "lm-predictors": {
        "Confidence": ("the original's mean probability of the true answer against the distractor", LANGUAGE),
        "Variability": ("trace of the covariance of the original's question states (last layer)", LANGUAGE),
    },
    "continual": {
        "Acc_f": ("test accuracy on the classes this task forgets, %", CONTINUAL),
        "Acc_r": ("test accuracy on the classes no task has forgotten yet, %", CONTINUAL),
        "Acc_o": ("test accuracy on the classes earlier tasks forgot, %", CONTINUAL),
        "Drop": ("Acc_f at the task's start − Acc_f, points", CONTINUAL),
        "H": ("harmonic mean of Drop and Acc_r", CONTINUAL),
    },
}
"""Per metric (its registered name), per key it produces: (one-line definition, doc path with anchor)."""

BOARD_COLUMNS: dict[str, tuple[str, str | None]] = {
    AVG_GAP: ("mean |metric − oracle| over the gap metrics named above", GAPS),
    ROBUST_GAP: ("the same mean over the gap metrics and the probe and relearn attacks named above", GAPS),
    RUN_TIME: ("run time of the method, seconds", None),
}
"""Columns the leaderboard computes from the records."""


def describe(column: str, metrics: Sequence[str]) -> tuple[str, str | None] | None:
    """(definition, doc path) of `column`: the board's own columns, then the first of `metrics` (the benchmark's
    records' metric names) that produces it, then any metric that does; None when no entry knows it."""
    if column in BOARD_COLUMNS:
        return BOARD_COLUMNS[column]
    for name in [*metrics, *COLUMNS]:
        if column in COLUMNS.get(name, {}):
            return COLUMNS[name][column]
    return None


def gap_keys(records: Sequence) -> tuple[list[str], list[str]]:
    """The metrics a benchmark's Avg. Gap averages (its records' `gap_metrics`, in order) and those its Robust Gap
    adds (the depth attacks, where a record and its oracle hold them; else none)."""
    gap = list(dict.fromkeys(k for r in records for k in r.config.get("gap_metrics", [])))
    deep = any(all(k in r.metrics and k in r.oracle_metrics for k in DEPTH_METRICS) for r in records)
    return gap, list(DEPTH_METRICS) if deep and gap else []


def bold_rule(column: str) -> str:
    """What bold marks in `column`: the lowest value, the highest, or the closest to the oracle."""
    if column in LOWER_IS_BETTER:
        return "lowest"
    if column in HIGHER_IS_BETTER:
        return "highest"
    return "closest to the oracle"


def metric_names(records: Sequence) -> list[str]:
    """The metric names a benchmark's records list, in order of first appearance."""
    return list(dict.fromkeys(m for r in records for m in r.config.get("metrics", [])))

