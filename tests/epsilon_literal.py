"""A slow, literal ε per example, written straight from the rules in unlearn/metrics/epsilon.py's docstring.

Used only by tests (and the speed benchmark, for contrast) as the reference the vectorised code must equal.
It loops over examples and over right ends of the interval rules in plain Python, compares every model's
value with every threshold (no sorting, no searching, no count table), and evaluates each rule's ε with the
competition's own nan semantics: undefined logarithms are ignored by nanmax, rules whose ε is undefined or
that have exactly one zero rate are dropped, and the example's ε is the maximum of the surviving rules.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

DELTA = 1e-5
CAP = 50.0


def rule_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> list[float]:
    """ε of each rule, discarded rules left out."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmax of two nans: the rule is dropped below
        e1 = np.log(1 - delta - fpr) - np.log(fnr)
        e2 = np.log(1 - delta - fnr) - np.log(fpr)
        eps = np.clip(np.nanmax(np.stack([e1, e2]), axis=0), 0, None)  # nan where both logarithms are undefined
    both_zero = (fpr == 0) & (fnr == 0)
    one_zero = (fpr == 0) ^ (fnr == 0)
    eps = np.where(both_zero, math.inf, eps)
    keep = ~one_zero & ~np.isnan(eps)  # exactly one zero rate, or an undefined ε: the rule is discarded
    return list(eps[keep])


def example_epsilon(u: np.ndarray, r: np.ndarray, delta: float = DELTA) -> float:
    """ε of one example from its N unlearned and N retrained confidences."""
    n = len(u)
    if np.median(r) > np.median(u):
        pos, neg = r, u
    else:
        pos, neg = u, r
    pos_range = np.max(pos) - np.min(pos)
    neg_range = np.max(neg) - np.min(neg)
    larger = max(pos_range, neg_range)
    smaller = min(pos_range, neg_range)
    if larger > 0 and smaller / larger < 0.01:
        return CAP

    epsilons: list[float] = []

    # Single thresholds over the pooled values; value >= t is called positive.
    lo = min(np.min(pos), np.min(neg))
    hi = max(np.max(pos), np.max(neg))
    thresholds = np.linspace(lo, hi, int(math.ceil((hi - lo) * 100)))
    called_pos_p = pos[:, None] >= thresholds[None, :]
    called_pos_n = neg[:, None] >= thresholds[None, :]
    fnr = (~called_pos_p).sum(axis=0) / n
    fpr = called_pos_n.sum(axis=0) / n
    epsilons += rule_epsilons(fpr, fnr, delta)

    # Intervals [l, r] around the narrower side (negative side on equal ranges); inside is called "narrower".
    if pos_range >= neg_range:
        narrow, wide = neg, pos
    else:
        narrow, wide = pos, neg
    w = smaller
    r_lo = (np.min(narrow) + w) - 2.0
    r_hi = np.max(narrow) + 2.0
    for right in np.linspace(r_lo, r_hi, int(math.ceil((r_hi - r_lo) * 100))):
        lefts = np.linspace(right - w - 2.0, right - w + 2.0, 400)
        inside_n = (lefts[None, :] <= narrow[:, None]) & (narrow[:, None] <= right)
        inside_w = (lefts[None, :] <= wide[:, None]) & (wide[:, None] <= right)
        fnr = (~inside_n).sum(axis=0) / n
        fpr = inside_w.sum(axis=0) / n
        epsilons += rule_epsilons(fpr, fnr, delta)

    if not epsilons:
        return 0.0
    return float(min(max(max(epsilons), 0.0), CAP))


def literal_epsilon(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """ε per example, one example at a time."""
    unlearned = np.asarray(unlearned, dtype=np.float64)
    retrained = np.asarray(retrained, dtype=np.float64)
    return np.array([example_epsilon(unlearned[:, j], retrained[:, j], delta) for j in range(unlearned.shape[1])])


def literal_points(eps: np.ndarray, n_models: int) -> np.ndarray:
    """Points per example by walking the bins [k/2, (k+1)/2) up to ceil(ln(N − 1))."""
    cap = math.ceil(math.log(n_models - 1))
    out = []
    for e in eps:
        points, start, got = 1.0, 0.0, 0.0
        while start + 0.5 <= cap:
            if e < start + 0.5:
                got = points
                break
            points /= 2
            start += 0.5
        out.append(got)
    return np.array(out)
