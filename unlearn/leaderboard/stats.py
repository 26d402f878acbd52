"""Statistics of the leaderboard: confidence intervals over seeds and paired comparisons of methods.

Every number a table shows is a mean over the seeds that finished, with a 95 % Student t
confidence interval (`Stat`). Methods are compared seed by seed: the records of one seed
share their original model, oracle and forget set, so the paired t test
(`scipy.stats.ttest_rel`) on the per-seed scores removes what the seeds have in common.
Within one table and one question (which methods are not distinguishable from the best
in a column; which are not distinguishable from the original model), the p-values of
the methods compared are Holm-adjusted, so the chance of calling any of them different
when none is stays at most ALPHA.

Degenerate pairs (docs/metrics.md, "Reading the tables"):
- fewer than two seeds in common: no test (`p` is None);
- every difference zero: the data show no difference, p = 1;
- the same non-zero difference on every seed: the t statistic is infinite, p = 0.
Differences within TOLERANCE (relative) of zero or of each other count as equal, so that
rounding in the last bits of a float does not decide a comparison.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

CONFIDENCE = 0.95
"""The level of every interval a table shows."""
ALPHA = 0.05
"""The family-wise error rate of each table's comparisons (Holm)."""
TOLERANCE = 1e-9
"""Relative size below which a paired difference, or the spread of the differences, counts as zero."""


@dataclass(frozen=True)
class Stat:
    """Mean over the seeds that finished (`n` of them), sample standard deviation, and the half-width of the
    95 % Student t confidence interval of the mean (None for fewer than two seeds)."""

    mean: float | None
    std: float | None
    n: int
    half: float | None = None

    @classmethod
    def of(cls, values: pd.Series | Sequence[float]) -> Stat:
        values = pd.Series(values, dtype=float).dropna()
        if values.empty:
            return cls(None, None, 0)
        mean = float(values.mean())
        if len(values) < 2:
            return cls(mean, None, len(values))
        std = float(values.std(ddof=1))
        return cls(mean, std, len(values), interval_half_width(values.to_numpy()))

    @property
    def ci_low(self) -> float | None:
        return None if self.mean is None or self.half is None else self.mean - self.half

    @property
    def ci_high(self) -> float | None:
        return None if self.mean is None or self.half is None else self.mean + self.half

    def text(self, digits: int = 2) -> str:
        """'m ± h' with h the 95 % CI half-width ('m' for one seed, '—' for none), with `digits` decimals."""
        if self.mean is None:
            return "—"
        if self.half is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def interval_half_width(values: np.ndarray, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student t interval (n − 1 degrees of freedom) of the mean of `values` (n ≥ 2)."""
    sem = float(st.sem(values))
    if sem == 0.0:  # every seed gave the same value: the interval is that value
        return 0.0
    low, high = st.t.interval(confidence, len(values) - 1, loc=float(np.mean(values)), scale=sem)
    return float(high - low) / 2


def paired_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t test of `a` against `b` (the same seeds, in the same order).

    None with fewer than two pairs; 1 when every difference is zero; 0 when every seed shows the same
    non-zero difference (see the module docstring).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"paired samples of different lengths ({len(x)} and {len(y)})")
    if len(x) < 2:
        return None
    diff = x - y
    tol = TOLERANCE * max(1.0, float(np.max(np.abs(x))), float(np.max(np.abs(y))))
    if np.all(np.abs(diff) <= tol):
        return 1.0
    if np.ptp(diff) <= tol:
        return 0.0
    with warnings.catch_warnings():  # near-constant differences: scipy warns about precision, the p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(st.ttest_rel(x, y).pvalue)
    return p if math.isfinite(p) else None


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment: each p-value multiplied by the number of hypotheses not yet rejected,
    made monotone and capped at 1. An adjusted p ≤ ALPHA rejects with family-wise error at most ALPHA."""
    order = sorted(pvalues, key=lambda k: (pvalues[k], k))
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * pvalues[key]))
        adjusted[key] = running
    return adjusted


Scores = Mapping[str, Mapping[int, float]]
"""Per method, its score on each seed that finished (lower is better)."""


@dataclass(frozen=True)
class Comparison:
    """One method against a reference in a table: mean paired difference (method − reference, over the seeds
    both have), the Holm-adjusted p-value (None: untested) and whether the difference is significant."""

    diff: float
    p: float | None
    significant: bool


def _pairs(scores: Mapping[int, float], reference: Mapping[int, float]) -> tuple[list[float], list[float]]:
    seeds = sorted(set(scores) & set(reference))
    return [scores[s] for s in seeds], [reference[s] for s in seeds]


def compare(scores: Scores, reference: Mapping[int, float], shown: int = 2) -> dict[str, Comparison]:
    """Each method of `scores` against `reference` (per-seed scores), Holm-adjusted over the methods tested.

    A method with fewer than two seeds in common with the reference is not tested; it counts as different
    exactly when its mean, at the `shown` decimals, differs from the reference's mean over the same seeds.
    """
    raw: dict[str, float] = {}
    diffs: dict[str, float] = {}
    for method, values in scores.items():
        mine, theirs = _pairs(values, reference)
        if not mine:
            continue
        diffs[method] = float(np.mean(mine) - np.mean(theirs))
        p = paired_p(mine, theirs)
        if p is not None:
            raw[method] = p
    adjusted = holm(raw)
    out = {}
    for method, diff in diffs.items():
        p = adjusted.get(method)
        if p is None:
            mine, theirs = _pairs(scores[method], reference)
            significant = round(float(np.mean(mine)), shown) != round(float(np.mean(theirs)), shown)
        else:
            significant = p <= ALPHA
        out[method] = Comparison(diff, p, significant)
    return out


def best_of(scores: Scores) -> str | None:
    """The method with the lowest mean score (ties by name), or None when no method has a score."""
    means = {m: float(np.mean(list(v.values()))) for m, v in scores.items() if v}
    if not means:
        return None
    return min(means, key=lambda m: (means[m], m))


def tied_with_best(scores: Scores, shown: int = 2) -> tuple[str | None, dict[str, Comparison]]:
    """The best method of `scores` and every other method compared with it (`compare`, Holm over the others)."""
    best = best_of(scores)
    if best is None:
        return None, {}
    others = {m: v for m, v in scores.items() if m != best and v}
    return best, compare(others, scores[best], shown)


def ranking(scores: Scores, shown: int = 2) -> tuple[dict[str, int], dict[str, Comparison]]:
    """Rank of each method with a score, and each method's comparison with the best (none for the best itself).

    Rank 1 goes to the best and to every method not significantly different from it; any other method ranks
    1 + the number of methods with a strictly lower mean (competition ranking by mean).
    """
    best, versus = tied_with_best(scores, shown)
    if best is None:
        return {}, {}
    means = {m: float(np.mean(list(v.values()))) for m, v in scores.items() if v}
    out = {best: 1}
    for method, comparison in versus.items():
        out[method] = 1 + sum(other < means[method] for other in means.values()) if comparison.significant else 1
    return out, versus


def ranks(scores: Scores, shown: int = 2) -> dict[str, int]:
    """Rank of each method with a score (`ranking`)."""
    return ranking(scores, shown)[0]
