"""U-LiRA: the per-example likelihood-ratio attack on unlearning (Hayes et al., "Inexact unlearning needs more
careful evaluations"), scored leave-one-out over shadow models.

Setting: K shadow models; for shadow k and target example j, ``unlearned[k, j]`` says j was in shadow k's
training half and then unlearned, otherwise j was never in shadow k's training data ("out").
``conf[k, j]`` is the logit-scaled confidence log p_y − log(1 − p_y) (``log_odds_confidence`` in
unlearn.metrics.epsilon computes it from logits).

Each shadow in turn is the target. For every example, Gaussians are fitted to the confidences of the OTHER
shadows where the example was unlearned and where it was out (the target's own observation never enters a
fit, nor the pooled variance), and the target's observation is called "unlearned" when its log-likelihood
under the unlearned Gaussian is strictly larger (ties: "out"). The attack on a target is scored on a balanced
set: all of its unlearned examples and as many of its out examples, drawn without replacement by a seeded
numpy Generator (when it has fewer out than unlearned examples, the unlearned ones are drawn instead).
50 % accuracy means unlearned and never-trained examples are indistinguishable.

Variances: by default each example's own unbiased variance (ddof = 1) on each side, floored at
``variance_floor`` × the side's pooled variance (within-example variance pooled over all usable examples, the
estimate LiRA's "fixed variance" option uses), so that an example whose few observations happen to coincide
does not get a zero-width Gaussian. ``fixed_variance=True`` uses the pooled variance for every example
(LiRA's recommendation when there are few shadow models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from unlearn.errors import UserError
from unlearn.metrics.base import Evaluation, Scores, metric
from unlearn.metrics.epsilon import forget_confidences

_TINY_VARIANCE = 1e-12  # absolute floor, for data with no spread at all


@dataclass(frozen=True)
class ULiraResult:
    """U-LiRA accuracy (percent) and what it was computed from."""

    accuracy: float  # mean over target shadows of the balanced attack accuracy, % (50 = indistinguishable)
    stderr: float  # standard error of that mean over targets, % (nan with one target; targets share shadows)
    n_shadows: int  # K
    n_targets: int  # shadows scored as targets (those with at least one unlearned and one out usable example)
    n_examples: int  # target examples given (columns)
    n_used: int  # examples attacked on at least one target
    n_skipped: int  # examples never attacked: for every target, fewer than min_obs observations on a side
    per_target: np.ndarray  # accuracy per shadow, % (nan where the shadow could not be a target)


def _as_array(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _moments(x: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Per column: count, sum and sum of squares of x where `on` ([3, n])."""
    xo = np.where(on, x, 0.0)
    return np.stack([on.sum(axis=0).astype(np.float64), xo.sum(axis=0), (xo * xo).sum(axis=0)])


def _fit(moments: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean and unbiased variance per column from its moments, and the variance pooled over `columns`."""
    count, total, squares = moments[:, columns]
    mean = total / count
    deviation = np.maximum(squares - total * mean, 0.0)  # Σ(x − mean)²; x is centred, so this stays accurate
    return mean, deviation / (count - 1), float(deviation.sum() / (count - 1).sum())


def _log_likelihood(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * np.log(var) - (x - mean) ** 2 / (2.0 * var)


def ulira(
    conf: np.ndarray | torch.Tensor,
    unlearned: np.ndarray | torch.Tensor,
    *,
    min_obs: int = 2,
    fixed_variance: bool = False,
    variance_floor: float = 0.01,
    seed: int | np.random.Generator = 0,
) -> ULiraResult:
    """U-LiRA accuracy from confidences conf[K shadows, n examples] and the boolean mask unlearned[K, n].

    On target k, an example is attacked only if the other K − 1 shadows hold at least `min_obs` (≥ 2) unlearned
    and `min_obs` out observations of it; examples attacked on no target are counted in `n_skipped`. Fits are
    vectorised over examples; the loop runs over the K targets.
    """
    x = _as_array(conf)
    mask = _as_array(unlearned)
    if x.ndim != 2:
        raise UserError(f"U-LiRA confidences must be 2-D [shadows, examples], got shape {tuple(x.shape)}")
    if mask.shape != x.shape:
        raise UserError(f"U-LiRA mask has shape {tuple(mask.shape)} but confidences have {tuple(x.shape)}")
    if mask.dtype != np.bool_:
        if not (np.issubdtype(mask.dtype, np.integer) and np.isin(mask, (0, 1)).all()):
            raise UserError(f"U-LiRA mask must be boolean (unlearned = True), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    try:
        x = x.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise UserError(f"U-LiRA confidences must be numeric: {exc}") from None
    if not np.isfinite(x).all():
        raise UserError("U-LiRA confidences hold non-finite values (nan or inf)")
    n_shadows, n_examples = x.shape
    if n_shadows < 3:
        raise UserError(f"U-LiRA needs at least 3 shadow models (one target, fits on the rest), got {n_shadows}")
    if isinstance(min_obs, bool) or not isinstance(min_obs, int) or min_obs < 2:
        raise UserError(f"min_obs must be an integer of at least 2 (a variance needs 2 observations), got {min_obs}")
    if not variance_floor >= 0:
        raise UserError(f"variance_floor must be non-negative, got {variance_floor}")

    n_unlearned = mask.sum(axis=0)
    # Example j may be attacked on target k when the OTHER shadows hold at least min_obs observations of it on
    # each side. This depends on the other shadows only, so it says nothing about the target's own status
    # (selecting on all K shadows would: with K = 6 and min_obs = 2 it would keep only examples unlearned by
    # exactly 3 shadows, and the side missing the target would always be the smaller one).
    others_unlearned = n_unlearned[None, :] - mask  # [K, n]: unlearned count among the other shadows
    eligible = (others_unlearned >= min_obs) & ((n_shadows - 1) - others_unlearned >= min_obs)
    used = eligible.any(axis=0)
    if not used.any():
        raise UserError(
            f"no target example has at least {min_obs} unlearned and {min_obs} out observations among the other "
            f"shadow models for any target (K = {n_shadows}, min_obs = {min_obs})"
        )
    x = x - x.mean(axis=0)  # centre each example: decisions are shift-invariant, sums of squares stay accurate
    all_u, all_o = _moments(x, mask), _moments(x, ~mask)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    per_target = np.full(n_shadows, np.nan)
    for k in range(n_shadows):
        target_u = np.flatnonzero(eligible[k] & mask[k])
        target_o = np.flatnonzero(eligible[k] & ~mask[k])
        count = min(len(target_u), len(target_o))
        if count == 0:
            continue
        if len(target_o) > count:
            target_o = np.sort(rng.choice(target_o, size=count, replace=False))
        if len(target_u) > count:
            target_u = np.sort(rng.choice(target_u, size=count, replace=False))
        picked = np.concatenate([target_u, target_o])
        # Leave shadow k out: remove its own observation from the side it is on.
        own = _moments(x[k : k + 1], mask[k : k + 1]), _moments(x[k : k + 1], ~mask[k : k + 1])
        columns = np.flatnonzero(eligible[k])  # pooled variances cover every eligible example, not just picked
        mean_u, var_u, pooled_u = _fit(all_u - own[0], columns)
        mean_o, var_o, pooled_o = _fit(all_o - own[1], columns)
        where = np.searchsorted(columns, picked)
        mean_u, var_u, mean_o, var_o = mean_u[where], var_u[where], mean_o[where], var_o[where]
        if fixed_variance:
            var_u = np.full_like(var_u, max(pooled_u, _TINY_VARIANCE))
            var_o = np.full_like(var_o, max(pooled_o, _TINY_VARIANCE))
        else:
            var_u = np.maximum(var_u, max(variance_floor * pooled_u, _TINY_VARIANCE))
            var_o = np.maximum(var_o, max(variance_floor * pooled_o, _TINY_VARIANCE))
        target = x[k, picked]
        says_unlearned = _log_likelihood(target, mean_u, var_u) > _log_likelihood(target, mean_o, var_o)
        correct = says_unlearned[:count].sum() + (~says_unlearned[count:]).sum()
        per_target[k] = 100.0 * correct / (2 * count)

    scored = per_target[~np.isnan(per_target)]
    if len(scored) == 0:
        raise UserError("no shadow model has both an unlearned and an out example among the usable examples")
    stderr = float(scored.std(ddof=1) / math.sqrt(len(scored))) if len(scored) > 1 else math.nan
    return ULiraResult(
        accuracy=float(scored.mean()),
        stderr=stderr,
        n_shadows=n_shadows,
        n_targets=len(scored),
        n_examples=n_examples,
        n_used=int(used.sum()),
        n_skipped=int((~used).sum()),
        per_target=per_target,
    )


@metric("ulira", needs=("forget", "shadows"), produces=("U-LiRA", "U-LiRA-N"), settings=("bank",))
def ulira_metric(ev: Evaluation) -> Scores:
    """U-LiRA attack accuracy (%) on the method's unlearned shadows (50 = indistinguishable), with K recorded.

    The shadows come from the harness (see unlearn.banks): each trained on a seeded random half of the
    training split and unlearned on the part of the cell's forget set inside it, so the targets are the
    cell's forget examples, each unlearned in about half of the shadows and never seen in the rest.
    """
    shadows = ev.need("shadows")
    result = ulira(forget_confidences(shadows.evaluations), shadows.unlearned, seed=ev.seed)
    info = {
        "n_shadows": result.n_shadows,
        "n_targets": result.n_targets,
        "n_examples": result.n_examples,
        "n_skipped": result.n_skipped,
        "stderr": None if math.isnan(result.stderr) else result.stderr,
        "shadow_seconds": round(shadows.seconds, 3),
    }
    return Scores({"U-LiRA": result.accuracy, "U-LiRA-N": float(result.n_shadows)}, info)
