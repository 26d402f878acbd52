"""U-LiRA: chance on indistinguishable data, near 100 % on separated data, and a real leave-one-out."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn.errors import UserError
from unlearn.metrics.ulira import ulira


def shadows(n_shadows: int, n_examples: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidences with a per-example level, shadow noise, and `shift` added where the example was unlearned."""
    rng = np.random.default_rng(seed)
    level = rng.normal(scale=3.0, size=n_examples)
    unlearned = rng.random((n_shadows, n_examples)) < 0.5
    conf = level + rng.normal(size=(n_shadows, n_examples)) + shift * unlearned
    return conf, unlearned


@pytest.mark.parametrize("n_shadows", [6, 16])
@pytest.mark.parametrize("fixed_variance", [False, True])
def test_indistinguishable_sides_give_chance_accuracy(n_shadows: int, fixed_variance: bool):
    conf, unlearned = shadows(n_shadows, 4000, shift=0.0, seed=n_shadows)
    result = ulira(conf, unlearned, fixed_variance=fixed_variance)
    assert 46.0 <= result.accuracy <= 54.0
    assert result.n_shadows == n_shadows and result.n_examples == 4000
    assert result.n_used + result.n_skipped == 4000 and result.n_targets == n_shadows


def test_separated_sides_give_near_perfect_accuracy():
    conf, unlearned = shadows(16, 1000, shift=6.0, seed=1)
    result = ulira(conf, unlearned)
    assert result.accuracy > 97.0
    assert ulira(conf, unlearned, fixed_variance=True).accuracy > 97.0
    weak = ulira(*shadows(16, 4000, shift=0.5, seed=2))
    assert 52.0 < weak.accuracy < result.accuracy  # a small shift is detected, but not perfectly


def leaky_accuracy(conf: np.ndarray, unlearned: np.ndarray) -> float:
    """The attack with the target's own observation kept in the fits (what leave-one-out prevents)."""

    def fit(on):
        count = np.maximum(on.sum(0), 2)  # examples with fewer observations are not scored below
        mean = np.where(on, conf, 0).sum(0) / count
        return mean, np.where(on, (conf - mean) ** 2, 0).sum(0) / (count - 1)

    (mean_u, var_u), (mean_o, var_o) = fit(unlearned), fit(~unlearned)
    ok = (unlearned.sum(0) >= 3) & ((~unlearned).sum(0) >= 3)
    accuracies = []
    for k in range(len(conf)):
        var_u, var_o = np.maximum(var_u, 1e-12), np.maximum(var_o, 1e-12)
        ll_u = -0.5 * np.log(var_u) - (conf[k] - mean_u) ** 2 / (2 * var_u)
        ll_o = -0.5 * np.log(var_o) - (conf[k] - mean_o) ** 2 / (2 * var_o)
        says = ll_u > ll_o
        accuracies.append(50 * (says[ok & unlearned[k]].mean() + (~says[ok & ~unlearned[k]]).mean()))
    return float(np.mean(accuracies))


def test_the_targets_own_observation_never_enters_the_fits():
    conf, unlearned = shadows(8, 3000, shift=0.0, seed=3)
    assert leaky_accuracy(conf, unlearned) > 60.0  # keeping the target's observation would fake a signal
    assert 46.0 <= ulira(conf, unlearned).accuracy <= 54.0


def literal_target_accuracy(conf, unlearned, k, min_obs, fixed_variance, variance_floor=0.01) -> float:
    """Accuracy on target k, one example at a time (every eligible example; the masks make the set balanced)."""
    n_shadows, n_examples = conf.shape
    others = [i for i in range(n_shadows) if i != k]
    fits, dev_u, dev_o, dof_u, dof_o = {}, 0.0, 0.0, 0, 0
    for j in range(n_examples):
        on_u = [conf[i, j] for i in others if unlearned[i, j]]
        on_o = [conf[i, j] for i in others if not unlearned[i, j]]
        if len(on_u) < min_obs or len(on_o) < min_obs:
            continue
        fits[j] = (np.mean(on_u), np.var(on_u, ddof=1), np.mean(on_o), np.var(on_o, ddof=1))
        dev_u += np.var(on_u) * len(on_u)
        dev_o += np.var(on_o) * len(on_o)
        dof_u, dof_o = dof_u + len(on_u) - 1, dof_o + len(on_o) - 1
    pooled_u, pooled_o = dev_u / dof_u, dev_o / dof_o
    correct = []
    for j, (mu_u, var_u, mu_o, var_o) in fits.items():
        if fixed_variance:
            var_u, var_o = pooled_u, pooled_o
        else:
            var_u, var_o = max(var_u, variance_floor * pooled_u), max(var_o, variance_floor * pooled_o)
        x = conf[k, j]
        says_unlearned = -0.5 * np.log(var_u) - (x - mu_u) ** 2 / (2 * var_u) > (
            -0.5 * np.log(var_o) - (x - mu_o) ** 2 / (2 * var_o)
        )
        correct.append(says_unlearned == bool(unlearned[k, j]))
    return 100.0 * float(np.mean(correct))


def balanced_masks(n_shadows: int, n_examples: int, seed: int) -> np.ndarray:
    """Each shadow unlearns exactly half the examples; each example is unlearned by 3 to K − 3 shadows."""
    rng = np.random.default_rng(seed)
    while True:
        mask = np.array([rng.permutation(n_examples) < n_examples // 2 for _ in range(n_shadows)])
        per_example = mask.sum(0)
        if ((per_example >= 3) & (per_example <= n_shadows - 3)).all():
            return mask


@pytest.mark.parametrize("fixed_variance", [False, True])
def test_per_target_accuracy_equals_a_literal_leave_one_out(fixed_variance: bool):
    unlearned = balanced_masks(12, 40, seed=4)
    rng = np.random.default_rng(5)
    conf = rng.normal(scale=2.0, size=40) + rng.normal(size=(12, 40)) + 0.8 * unlearned
    conf[:, :5] = np.round(conf[:, :5])  # coinciding observations: tiny variances hit the floor
    result = ulira(conf, unlearned, fixed_variance=fixed_variance, variance_floor=0.3)
    literal = [literal_target_accuracy(conf, unlearned, k, 2, fixed_variance, 0.3) for k in range(12)]
    np.testing.assert_allclose(result.per_target, literal)
    assert result.accuracy == pytest.approx(np.mean(literal))
    assert result.stderr == pytest.approx(np.std(literal, ddof=1) / np.sqrt(12))


def test_examples_without_enough_observations_are_skipped_and_counted():
    rng = np.random.default_rng(6)
    unlearned = np.array([rng.permutation(10) < 5 for _ in range(200)]).T  # [10, 200]: 5 of 10 shadows each
    unlearned[:, :30] = np.arange(10)[:, None] < 1  # one unlearned observation: never 2 once a shadow is left out
    unlearned[:, 30:40] = np.arange(10)[:, None] < 2  # two: usable (as out examples) on targets 2..9 only
    conf = rng.normal(size=(10, 200)) + unlearned
    result = ulira(conf, unlearned)
    assert (result.n_skipped, result.n_used) == (30, 170)
    assert ulira(conf, unlearned, min_obs=3).n_skipped == 40
    assert ulira(conf, unlearned, min_obs=4).n_skipped == 40  # 5 of 10: 4 left on either side
    with pytest.raises(UserError):
        ulira(conf, unlearned, min_obs=5)
    first = ulira(conf, unlearned, seed=7)
    assert np.array_equal(first.per_target, ulira(conf, unlearned, seed=7).per_target)  # deterministic


def test_bad_inputs_raise_user_errors():
    conf, unlearned = shadows(8, 50, shift=0.0, seed=8)
    with pytest.raises(UserError):
        ulira(conf, unlearned[:, :40])
    with pytest.raises(UserError):
        ulira(conf[:2], unlearned[:2])  # K < 3
    with pytest.raises(UserError):
        ulira(conf, np.zeros_like(unlearned))  # nothing was ever unlearned: no example can be attacked
    with pytest.raises(UserError):
        ulira(conf, unlearned, min_obs=1)
    with pytest.raises(UserError):
        ulira(conf, unlearned.astype(float) * 0.5)
    bad = conf.copy()
    bad[0, 0] = np.nan
    with pytest.raises(UserError):
        ulira(bad, unlearned)
