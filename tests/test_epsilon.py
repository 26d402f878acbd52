"""ε forgetting quality: the vectorised code equals a literal per-example loop, and the reference's calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from epsilon_literal import literal_epsilon, literal_points

from unlearn.errors import UserError
from unlearn.metrics.epsilon import (
    EPSILON_CAP,
    epsilon_points,
    final_score,
    forgetting_quality,
    log_odds_confidence,
    max_epsilon,
    per_example_epsilon,
)


def awkward_confidences(n_models: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, 24] unlearned and retrained confidences with ties, constant columns, overlap and separation."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_models, 24))
    r = rng.normal(0.1, 1.2, size=(n_models, 24))
    u[:, :4], r[:, :4] = np.round(u[:, :4]), np.round(r[:, :4])  # heavy ties, also across the two sides
    u[:, 4] = r[:, 4] = 1.0  # identical constants
    u[:, 5] = 1.0  # constant unlearned side, spread retrained side
    u[:, 6], r[:, 6] = 2.0, 2.004  # different constants closer than the grid step
    u[:, 7], r[:, 7] = 2.0, 2.5  # different constants
    u[:, 8], r[:, 8] = np.round(u[:, 8] * 10) / 10, np.round(r[:, 8] * 10) / 10 + 0.1  # ties on a 0.1 grid
    r[:, 9] = u[:, 9]  # identical samples
    r[:, 10] = u[:, 10] + 6.0  # clearly separated, retrained side positive
    r[:, 11] = u[:, 11] - 6.0  # clearly separated, unlearned side positive
    r[:, 12] = u[:, 12] * 0.05 + 3.0  # narrow retrained side above a wide unlearned one
    r[:, 13] = u[:, 13] * 0.5  # same median, different spread
    r[:, 14] = np.sort(u[:, 14])[::-1]  # same values in another order: equal medians (a tie)
    u[:, 15], r[:, 15] = u[:, 15] * 0.009, r[:, 15]  # range ratio just below 0.01 (almost surely)
    u[:, 16] = u[:, 16] * 30  # wide spread: many single thresholds
    return u, r


@pytest.mark.parametrize("n_models", [2, 5, 64])
def test_vectorised_epsilon_equals_the_literal_loop(n_models: int):
    u, r = awkward_confidences(n_models, seed=n_models)
    assert np.array_equal(per_example_epsilon(u, r), literal_epsilon(u, r))
    # Swapping the sides changes which one is positive on median ties; both paths must still agree.
    assert np.array_equal(per_example_epsilon(r, u), literal_epsilon(r, u))


def test_vectorised_epsilon_equals_the_literal_loop_with_other_delta_and_small_chunks(monkeypatch):
    import unlearn.metrics.epsilon as eps_module

    monkeypatch.setattr(eps_module, "_CHUNK_RULES", 200_000)  # several chunks of mixed grid sizes
    u, r = awkward_confidences(7, seed=3)
    assert np.array_equal(per_example_epsilon(u, r, delta=0.05), literal_epsilon(u, r, delta=0.05))


def test_points_follow_the_half_width_bins_up_to_ceil_log_n_minus_1():
    assert max_epsilon(64) == 5 and max_epsilon(512) == 7
    eps = np.array([0.0, 0.49, 0.5, 1.0, 4.99, 5.0, 6.99, 7.0, 50.0])
    expected_64 = [1, 1, 0.5, 0.25, 2.0**-9, 0, 0, 0, 0]
    expected_512 = [1, 1, 0.5, 0.25, 2.0**-9, 2.0**-10, 2.0**-13, 0, 0]
    assert np.array_equal(epsilon_points(eps, 64), expected_64)
    assert np.array_equal(epsilon_points(eps, 512), expected_512)
    grid = np.linspace(0, 8, 97)
    assert np.array_equal(epsilon_points(grid, 100), literal_points(grid, 100))
    with pytest.raises(UserError):
        epsilon_points(np.array([-0.1]), 64)


@pytest.mark.parametrize("n_models", [64, 512])
def test_two_samples_of_the_same_distribution_score_about_0_17(n_models: int):
    rng = np.random.default_rng(n_models)
    u, r = rng.normal(size=(n_models, 150)), rng.normal(size=(n_models, 150))
    quality = forgetting_quality(u, r)
    assert 0.10 <= quality <= 0.25  # the reference: ≈ 0.17 at N = 64 or 512, far from 1


def test_identical_samples_score_1_and_separated_ones_score_0():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(64, 50))
    assert np.array_equal(per_example_epsilon(u, u.copy()), np.zeros(50))  # every rule discarded or ε ≤ 0
    assert forgetting_quality(u, u.copy()) == 1.0
    eps = per_example_epsilon(u, u + 10.0)
    assert np.array_equal(eps, np.full(50, EPSILON_CAP))
    assert forgetting_quality(u, u + 10.0) == 0.0
    # Identical constant samples: both ranges are 0, the range rule does not fire, no rule separates them.
    assert per_example_epsilon(np.ones((8, 1)), np.ones((8, 1)))[0] == 0.0


def test_a_collapsed_unlearned_side_scores_the_cap_by_the_range_rule():
    rng = np.random.default_rng(1)
    retrained = rng.normal(size=(64, 10))
    unlearned = np.tile(np.median(retrained, axis=0), (64, 1))  # all N equal, inside the retrained spread
    assert np.array_equal(per_example_epsilon(unlearned, retrained), np.full(10, EPSILON_CAP))
    # Not just the range rule's doing: a spread of 2 % of the other side's range escapes it.
    unlearned_spread = unlearned + 0.02 * (retrained.max(0) - retrained.min(0)) * np.linspace(-0.5, 0.5, 64)[:, None]
    assert (per_example_epsilon(unlearned_spread, retrained) < EPSILON_CAP).all()


def test_log_odds_confidence_matches_the_formula_and_stays_finite():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=3.0, size=(4, 6, 10))
    labels = rng.integers(0, 10, size=(4, 6))
    p = torch.softmax(torch.tensor(logits), dim=-1).numpy()
    p_y = np.take_along_axis(p, labels[..., None], -1)[..., 0]
    direct = np.log(p_y + 1e-45) - np.log(1.0 - p_y + 1e-45)
    got = log_odds_confidence(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels))
    assert got.shape == (4, 6)
    np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-5)
    # Two classes: the log odds are the logit difference, without cancellation when p_y is close to 1.
    two = np.array([[30.0, 0.0], [0.0, 25.0], [-3.0, 4.0]])
    np.testing.assert_allclose(log_odds_confidence(two, np.array([0, 1, 0])), [30.0, 25.0, -7.0], rtol=1e-12)
    extreme = log_odds_confidence(np.array([[1000.0, 0.0], [1000.0, 0.0]]), np.array([0, 1]))
    np.testing.assert_allclose(extreme, [-math.log(1e-45), math.log(1e-45)], rtol=1e-12)


def test_bad_inputs_raise_user_errors():
    with pytest.raises(UserError):
        log_odds_confidence(np.zeros((3, 4)), np.array([0, 1, 4]))  # label out of range
    with pytest.raises(UserError):
        log_odds_confidence(np.zeros((3, 4)), np.array([0, 1]))  # wrong shape
    with pytest.raises(UserError):
        per_example_epsilon(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(UserError):
        per_example_epsilon(np.array([[0.0, np.nan]] * 3), np.zeros((3, 2)))
    with pytest.raises(UserError):
        forgetting_quality(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(UserError):
        forgetting_quality(np.zeros((2, 3)), np.ones((2, 3)))  # N = 2 would score 0 whatever the data
    with pytest.raises(UserError):
        forgetting_quality(np.zeros((6, 3)), np.zeros((5, 3)))


def test_final_score_multiplies_by_the_accuracy_ratios_without_clipping():
    value = final_score(0.5, [90.0, 100.0], [100.0, 100.0], [88.0], [80.0, 80.0])
    assert value == pytest.approx(0.5 * 0.95 * 1.1)
    with pytest.raises(UserError):
        final_score(0.5, [], [1.0], [1.0], [1.0])
    with pytest.raises(UserError):
        final_score(0.5, [1.0], [0.0], [1.0], [1.0])
