"""ε forgetting quality: the NeurIPS 2023 unlearning competition's per-example score, vectorised over examples.

Conventions (the competition's scoring code as /work/shared/reference/metrics.md describes it; the grids and the
edge cases follow the released metric.py of github.com/google-deepmind/unlearning_evaluation, reimplemented):

* Arrays are laid out ``[N models, n forget examples]``; the unlearned and retrained arrays have the same shape.
* Per example, the side (unlearned or retrained) with the larger median over models is *positive*; on a tie the
  unlearned side is positive.
* Range rule: with range = max − min over models, if (smaller range) / (larger range) < 0.01 the example scores
  ε = 50. When both ranges are 0 the ratio is 0/0 (undefined, as in the competition's code), the rule does not
  fire and the grids below decide: two identical constant samples then score ε = 0 (every rule is discarded),
  two different constants are separated by a grid rule and score ε = 50 (closer than about 0.01, the grids
  may miss the gap: then ε = 0).
* Otherwise two families of decision rules are swept on fixed grids (``linspace`` means ``numpy.linspace``:
  ``start + i·step`` with ``step = (stop − start)/(num − 1)``, the last point exactly ``stop``; one point is
  ``start``, zero points is no rule):

  - single thresholds: ``t ∈ linspace(lo, hi, ceil((hi − lo)·100))`` where lo, hi are the min and max of both
    sides pooled; a value ``≥ t`` is called positive. FNR = fraction of the positive side's models below t,
    FPR = fraction of the negative side's models at or above t.
  - intervals around the narrower side (narrower = smaller range; on equal ranges the negative side): with
    ``w`` = the smaller range, right ends ``r ∈ linspace(a, b, ceil((b − a)·100))`` with ``a = (nmin + w) − 2``,
    ``b = nmax + 2`` (nmin, nmax = the narrower side's min and max; 400 or 401 points) and for each r, left ends
    ``l ∈ linspace((r − w) − 2, (r − w) + 2, 400)``; a value in ``[l, r]`` (inclusive) is called "narrower
    side". FNR = fraction of the narrower side outside, FPR = fraction of the wider side inside (ε below is
    symmetric in FPR and FNR, so which side is called positive does not matter). About 160 000 rules.

* Each rule scores ε = max(ln(1 − δ − FPR) − ln FNR, ln(1 − δ − FNR) − ln FPR) clipped below at 0, a logarithm
  of a non-positive number being ignored (when both are, FPR = FNR = 1, the competition drops the rule and so do
  we); FPR = FNR = 0 scores the cap 50 (ε = ∞); a rule with exactly one of them 0 is discarded. The example's ε
  is the maximum over rules, clipped to [0, 50].
* All rules discarded: ε = 0. The competition's code stops with an assertion there (and its ``nanmax`` of an
  empty list would raise); 0 is the only value consistent with its clip to [0, 50] when no rule carries
  evidence, and it makes identical samples score F = 1 as the reference states. With this convention a
  discarded rule and a rule scoring 0 are interchangeable, which the vectorised code uses.

Deliberate differences from the competition's code: FPR/FNR and ε are computed in float64 (the competition
averages in float32). The two precisions give per-rule ε values up to 2.3e-6 apart at N = 512 models per side,
and up to 1.95e-5 apart at N = 1000; the gap grows with N. It has not mattered for the score: over 16 million
(FPR, FNR) count pairs, checked exhaustively, no float32 ε fell in a different bin from its float64 value.
Confidences come from logits in float64 (the competition exponentiates float32 logits); grids are built with
numpy's linspace formula (the competition builds the single-threshold grid with torch.linspace, which can differ
in the last bit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from unlearn.errors import UserError
from unlearn.metrics.base import Evaluation, Scores, metric

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
INTERVAL_BUFFER = 2.0
RANGE_RATIO = 0.01
BIN_WIDTH = 0.5
_LEFT_POINTS = int(math.ceil(2 * INTERVAL_BUFFER * THRESHOLDS_PER_UNIT))  # 400 left ends per right end
MAX_MODELS = 2048  # the rule tables hold (2N + 1)² float64 values: 8 MB at N = 512, 134 MB at N = 2048
_CHUNK_RULES = 3_000_000  # rules evaluated at once (examples × rules); bounds memory to a few hundred MB


def _as_float64(x: torch.Tensor | np.ndarray | Sequence, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{what} must be numeric: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise UserError(f"{what} holds non-finite values (nan or inf)")
    return arr


def log_odds_confidence(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """Natural-log odds of the true label, ln(p_y + 1e-45) − ln(Σ_{c≠y} p_c + 1e-45), from logits [..., classes].

    The softmax is taken in float64 after subtracting each row's largest logit, and the wrong-class mass is
    summed over the wrong classes (never 1 − p_y), so confidences near 1 keep their precision; values lie in
    about [−103.6, 103.6] (ln 1e-45). This is also U-LiRA's logit-scaled confidence log p_y − log(1 − p_y).
    """
    x = _as_float64(logits, "logits")
    if x.ndim < 1 or x.shape[-1] < 2:
        raise UserError(f"logits must have shape [..., classes] with at least 2 classes, got {tuple(x.shape)}")
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.shape != x.shape[:-1]:
        raise UserError(f"labels have shape {tuple(y.shape)}, expected {tuple(x.shape[:-1])} to match the logits")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= x.shape[-1]):
        raise UserError(f"labels must lie in [0, {x.shape[-1]}), got values from {y.min()} to {y.max()}")
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    p = z / z.sum(axis=-1, keepdims=True)
    correct = np.arange(x.shape[-1]) == y[..., None]
    p_y = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
    p_wrong = np.where(correct, 0.0, p).sum(axis=-1)
    return np.log(p_y + 1e-45) - np.log(p_wrong + 1e-45)


def epsilon_table(n_models: int, delta: float = DELTA) -> np.ndarray:
    """ε of one rule for every count pair: entry [a, b] has FPR = a/N, FNR = b/N (discarded rules score 0)."""
    counts = np.arange(n_models + 1, dtype=np.float64)
    fpr = (counts / n_models)[:, None]
    fnr = (counts / n_models)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    eps = np.where(np.isnan(eps), 0.0, np.maximum(eps, 0.0))  # both logarithms undefined: no evidence
    fpr_zero, fnr_zero = fpr == 0, fnr == 0
    eps = np.where(fpr_zero ^ fnr_zero, 0.0, eps)  # exactly one rate is 0: the rule is discarded
    eps = np.where(fpr_zero & fnr_zero, EPSILON_CAP, eps)  # perfect separation: ε = ∞, capped
    return np.minimum(eps, EPSILON_CAP)


def _linspace_rows(start: np.ndarray, stop: np.ndarray, num: np.ndarray, width: int) -> np.ndarray:
    """Row i is numpy.linspace(start[i], stop[i], num[i]) padded to `width` by repeating its last point.

    A row with num 0 holds `start` (only used where start == stop, where that rule is discarded anyway);
    repeating a rule never changes a maximum over rules.
    """
    idx = np.minimum(np.arange(width)[None, :], np.maximum(num - 1, 0)[:, None])
    step = (stop - start) / np.maximum(num - 1, 1)
    grid = idx * step[:, None] + start[:, None]
    last = (idx == (num - 1)[:, None]) & (num >= 2)[:, None]
    return np.where(last, stop[:, None], grid)


def _chunks(sizes: np.ndarray) -> list[np.ndarray]:
    """Split example indices, ordered by rule count, into chunks of at most _CHUNK_RULES padded rules."""
    order = np.argsort(sizes, kind="stable")
    padded = np.maximum(sizes[order], 1)
    chunks, start = [], 0
    while start < len(order):
        # In a chunk starting at `start`, padding to its last (largest) example costs (count) × size.
        cost = np.arange(1, len(order) - start + 1) * padded[start:]
        stop = start + max(int(np.searchsorted(cost, _CHUNK_RULES, side="right")), 1)
        chunks.append(order[start:stop])
        start = stop
    return chunks


def _merge(first: np.ndarray, second: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of both sides merged and sorted ([b, 2N]) and, per row, how many of the first k merged are `first`.

    The second tensor is [b, 2N + 1]: with k = (number of merged values < v), entry k is the number of values of
    `first` below v, whichever way ties between the two sides were ordered.
    """
    both = np.concatenate([first, second], axis=1)
    order = np.argsort(both, axis=1, kind="stable")
    merged = np.take_along_axis(both, order, axis=1)
    is_first = order < first.shape[1]
    prefix = np.concatenate([np.zeros((len(both), 1), dtype=np.int64), np.cumsum(is_first, axis=1)], axis=1)
    return torch.from_numpy(merged), torch.from_numpy(prefix)


def _best_single_threshold(pos: np.ndarray, neg: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Max over the single-threshold grid of the rule's ε, per example (pos/neg are [n, N]).

    With k = number of pooled values below t, FN = (positives below t) = prefix[k] and FP = N − (k − prefix[k]),
    so a rule's ε is a function of k alone: one table row per example, looked up by one searchsorted.
    """
    n_models = pos.shape[1]
    lo = np.minimum(pos.min(axis=1), neg.min(axis=1))
    hi = np.maximum(pos.max(axis=1), neg.max(axis=1))
    num = np.ceil((hi - lo) * THRESHOLDS_PER_UNIT).astype(np.int64)
    best = np.zeros(len(pos))
    for rows in _chunks(num):
        merged, below_pos = _merge(pos[rows], neg[rows])
        k = torch.arange(2 * n_models + 1)[None, :]
        by_k = torch.from_numpy(table)[n_models - k + below_pos, below_pos]  # [b, 2N + 1]: ε when k values < t
        t = _linspace_rows(lo[rows], hi[rows], num[rows], max(int(num[rows].max()), 1))
        below = torch.searchsorted(merged, torch.from_numpy(t), right=False)
        best[rows] = torch.gather(by_k, 1, below).amax(dim=1).numpy()
    return best


def _best_interval(narrow: np.ndarray, wide: np.ndarray, width: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Max over the interval grid of the rule's ε, per example (narrow/wide are [n, N]; width = narrower range).

    Inside [l, r] are c_n = Rn − Ln narrower and c_w = Rw − Lw wider values (R: at or below r, L: below l); for
    l > r both differences are ≤ 0 (an empty interval, a discarded rule). The rule's ε is looked up in a table
    extended to negative counts (scoring 0 there) at flat index (c_w + N)(2N + 1) + (N − c_n), which splits into a
    part of r and a part of l: each interval costs one searchsorted, one gather and one subtraction.
    """
    n_models = narrow.shape[1]
    side = 2 * n_models + 1
    ext = np.zeros((side, side))
    ext[n_models:, : n_models + 1] = table  # row c_w + N, column FN = N − c_n
    ext = torch.from_numpy(ext.reshape(-1))
    r_min = (narrow.min(axis=1) + width) - INTERVAL_BUFFER
    r_max = narrow.max(axis=1) + INTERVAL_BUFFER
    num = np.ceil((r_max - r_min) * THRESHOLDS_PER_UNIT).astype(np.int64)
    best = np.zeros(len(narrow))
    k = torch.arange(side)[None, :]
    for rows in _chunks(num * _LEFT_POINTS):
        b = len(rows)
        merged, narrow_below = _merge(narrow[rows], wide[rows])  # narrow_below[k]: narrow among the k lowest
        right = torch.from_numpy(_linspace_rows(r_min[rows], r_max[rows], num[rows], max(int(num[rows].max()), 1)))
        centre = right - torch.from_numpy(width[rows])[:, None]  # [b, R]
        l_start, l_stop = centre - INTERVAL_BUFFER, centre + INTERVAL_BUFFER
        l_step = (l_stop - l_start) / (_LEFT_POINTS - 1)
        left = torch.arange(_LEFT_POINTS, dtype=torch.float64) * l_step[..., None]  # numpy.linspace's formula
        left += l_start[..., None]
        left[..., -1] = l_stop  # [b, R, L]

        at_or_below_r = torch.searchsorted(merged, right, right=True)  # [b, R]
        rn = torch.gather(narrow_below, 1, at_or_below_r)
        right_part = (at_or_below_r - rn + n_models) * side + (n_models - rn)
        left_key = (k - narrow_below) * side - narrow_below  # [b, 2N + 1]: Lw(2N + 1) − Ln for k values below l
        below_l = torch.searchsorted(merged, left.view(b, -1), right=False)
        index = torch.gather(left_key, 1, below_l).view(left.shape).neg_().add_(right_part[:, :, None])
        best[rows] = torch.take(ext, index).view(b, -1).amax(dim=1).numpy()
    return best


def _check_pair(unlearned: np.ndarray | torch.Tensor, retrained: np.ndarray | torch.Tensor) -> tuple:
    u = _as_float64(unlearned, "unlearned confidences")
    r = _as_float64(retrained, "retrained confidences")
    if u.ndim != 2 or r.ndim != 2:
        raise UserError(
            f"confidences must be 2-D [models, examples], got shapes {tuple(u.shape)} and {tuple(r.shape)}"
        )
    if u.shape != r.shape:
        raise UserError(
            f"unlearned confidences have shape {tuple(u.shape)} but retrained have {tuple(r.shape)}: "
            "both need [models, examples] with the same number of models and the same examples"
        )
    if u.shape[1] == 0:
        raise UserError("confidences cover no forget examples")
    return u, r


def per_example_epsilon(
    unlearned: np.ndarray | torch.Tensor, retrained: np.ndarray | torch.Tensor, delta: float = DELTA
) -> np.ndarray:
    """ε per forget example from confidences [N models, n examples] of the unlearned and retrained models.

    Vectorised over all examples at once (loops only over chunks of examples to bound memory); the rules,
    grids and edge cases are those of the module docstring. Rates are exact counts over N, so each rule's ε is
    read from a table indexed by (false-positive count, false-negative count) instead of recomputed.
    """
    u, r = _check_pair(unlearned, retrained)
    if not 2 <= u.shape[0] <= MAX_MODELS:
        raise UserError(f"per-example ε needs 2 to {MAX_MODELS} models per side, got {u.shape[0]}")
    if not 0.0 <= delta < 1.0:
        raise UserError(f"delta must lie in [0, 1), got {delta}")
    n_models = u.shape[0]
    retrain_positive = np.median(r, axis=0) > np.median(u, axis=0)  # ties: the unlearned side is positive
    pos = np.ascontiguousarray(np.where(retrain_positive, r, u).T)  # [n, N]
    neg = np.ascontiguousarray(np.where(retrain_positive, u, r).T)
    pos_range, neg_range = pos.max(axis=1) - pos.min(axis=1), neg.max(axis=1) - neg.min(axis=1)
    smallest = np.minimum(pos_range, neg_range)
    with np.errstate(divide="ignore", invalid="ignore"):
        peaky = smallest / np.maximum(pos_range, neg_range) < RANGE_RATIO  # 0/0 is nan: not peaky
    eps = np.full(pos.shape[0], EPSILON_CAP)
    rest = np.flatnonzero(~peaky)
    if len(rest):
        table = epsilon_table(n_models, delta)
        pos, neg, pos_range, neg_range = pos[rest], neg[rest], pos_range[rest], neg_range[rest]
        narrow_is_neg = (pos_range >= neg_range)[:, None]
        narrow, wide = np.where(narrow_is_neg, neg, pos), np.where(narrow_is_neg, pos, neg)
        best = np.maximum(
            _best_single_threshold(pos, neg, table), _best_interval(narrow, wide, smallest[rest], table)
        )
        eps[rest] = np.clip(best, 0.0, EPSILON_CAP)
    return eps


def max_epsilon(n_models: int) -> int:
    """ceil(ln(N − 1)): ε at or above this scores 0 points (N = 64 → 5, N = 512 → 7)."""
    if n_models < 2:
        raise UserError(f"ε points need at least 2 models per side, got {n_models}")
    return int(math.ceil(math.log(n_models - 1)))


def epsilon_points(eps: np.ndarray, n_models: int) -> np.ndarray:
    """Points per example: bin k = [k/2, (k+1)/2) scores 2^−k; ε ≥ ceil(ln(N − 1)) scores 0.

    With N = 2 the cap is ceil(ln 1) = 0, so every example scores 0 (as the competition's formula gives).
    """
    e = np.asarray(eps, dtype=np.float64)
    if e.size and (np.isnan(e).any() or e.min() < 0):
        raise UserError("ε values must be non-negative numbers")
    cap = max_epsilon(n_models)
    bins = np.floor(np.minimum(e, cap) / BIN_WIDTH)  # bin k = [k/2, (k+1)/2)
    return np.where(e < cap, 0.5**bins, 0.0)


def forgetting_quality(
    unlearned: np.ndarray | torch.Tensor, retrained: np.ndarray | torch.Tensor, delta: float = DELTA
) -> float:
    """F = mean ε points over forget examples; N (models per side) is read from the arrays.

    Deliberate difference: N = 2 raises (the competition's formula scores every example 0 there, so F would
    say nothing about the method).
    """
    u, r = _check_pair(unlearned, retrained)
    if u.shape[0] < 3:
        raise UserError(
            f"forgetting quality needs at least 3 models per side, got {u.shape[0]} "
            "(with N = 2 the ε cap ceil(ln(N − 1)) is 0 and every example scores 0)"
        )
    return float(epsilon_points(per_example_epsilon(u, r, delta), u.shape[0]).mean())


def _mean(values: Sequence[float], what: str) -> float:
    arr = _as_float64(values, what).reshape(-1)
    if arr.size == 0:
        raise UserError(f"{what}: no values given")
    return float(arr.mean())


def final_score(
    forget_quality: float,
    ra_unlearned: Sequence[float],
    ra_retrained: Sequence[float],
    ta_unlearned: Sequence[float],
    ta_retrained: Sequence[float],
) -> float:
    """F × (mean RA_unlearned / mean RA_retrained) × (mean TA_unlearned / mean TA_retrained), not clipped.

    The accuracies are per-model values (any one unit, the same for all four).
    """
    ra_r, ta_r = _mean(ra_retrained, "RA of retrained models"), _mean(ta_retrained, "TA of retrained models")
    if ra_r == 0 or ta_r == 0:
        raise UserError("mean RA and TA of the retrained models must be non-zero")
    ra_u, ta_u = _mean(ra_unlearned, "RA of unlearned models"), _mean(ta_unlearned, "TA of unlearned models")
    return float(forget_quality) * (ra_u / ra_r) * (ta_u / ta_r)


def forget_confidences(evaluations: Sequence[Evaluation]) -> np.ndarray:
    """[models, |D_f|] log-odds confidences of each evaluated model on the forget set (banks, shadows)."""
    return np.stack([log_odds_confidence(e["forget"].logits, e["forget"].labels) for e in evaluations])


@metric(
    "epsilon",
    needs=("forget", "retain", "test", "oracle-bank", "method-bank"),
    produces=("Epsilon-F", "Epsilon-Score", "Epsilon-N"), settings=("bank",)
)
def epsilon(ev: Evaluation) -> Scores:
    """The NeurIPS 2023 competition score of the method's bank against the oracle bank, with N recorded.

    Epsilon-F is F (mean points over forget examples), Epsilon-Score the final score F × RA ratio ×
    TA ratio (bank means), Epsilon-N the number of models per bank. The calibration ceiling is the
    retrain row (a second, independent retrain bank against the oracle bank). No unlearning (the
    original row) is N copies of one model, which scores 0 by the range rule, or with
    `bank.originals: independent` N independently trained originals (see unlearn.banks).
    """
    oracle_bank, method_bank = ev.need("oracle-bank"), ev.need("method-bank")
    unlearned, retrained = forget_confidences(method_bank.evaluations), forget_confidences(oracle_bank.evaluations)
    eps = per_example_epsilon(unlearned, retrained)
    n = unlearned.shape[0]
    quality = float(epsilon_points(eps, n).mean())

    def accuracies(bank, split: str) -> list[float]:
        return [e[split].accuracy for e in bank.evaluations]

    score = final_score(
        quality,
        accuracies(method_bank, "retain"), accuracies(oracle_bank, "retain"),
        accuracies(method_bank, "test"), accuracies(oracle_bank, "test"),
    )
    info = {
        "n_models": n,
        "n_examples": int(unlearned.shape[1]),
        "delta": DELTA,
        "bins_stop_at": max_epsilon(n),
        "median_epsilon": float(np.median(eps)),
        "examples_at_cap": int((eps >= EPSILON_CAP).sum()),
        "oracle_bank": {"how": oracle_bank.how, "seconds": round(oracle_bank.seconds, 3)},
        "method_bank": {"how": method_bank.how, "seconds": round(method_bank.seconds, 3)},
    }
    return Scores({"Epsilon-F": quality, "Epsilon-Score": score, "Epsilon-N": float(n)}, info)
