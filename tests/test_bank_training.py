"""Model banks: every mode trains the members `train_with_recipe` defines (process bitwise, vmap closely)."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from unlearn.bank_training import MODES, _pool_speedup, choose_mode, train_models, vmap_supported
from unlearn.data import load_dataset
from unlearn.data.tensors import TensorData
from unlearn.errors import Diverged, UserError
from unlearn.models.base import Blueprint
from unlearn.spec import Recipe
from unlearn.train import train_with_recipe

RECIPE = Recipe(epochs=2, batch_size=64, lr=0.05)
"""The digits recipe shortened to 2 epochs (1259 samples: 19 full batches and a short one of 43)."""


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def blueprint(dataset, model: str) -> Blueprint:
    c, h, w = dataset.input_shape
    return Blueprint(model, c, (h, w), dataset.num_classes, dataset.mean, dataset.std)


def identical(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def max_difference(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def accuracy(model: nn.Module, data: TensorData) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(data.x).argmax(1) == data.y).float().mean())


def test_sequential_member_is_train_with_recipe(digits):
    bp = blueprint(digits, "mlp")
    bank = train_models(bp, digits.train, RECIPE, [5, 7], mode="sequential")
    assert bank.mode == "sequential" and bank.seeds == [5, 7]
    for seed, model in zip([5, 7], bank.models, strict=True):
        assert identical(model, train_with_recipe(bp.build(seed), digits.train, RECIPE, seed))
    assert not identical(bank.models[0], bank.models[1])


def test_process_pool_is_bitwise_sequential(digits):
    bp = blueprint(digits, "mlp")
    seeds = [0, 1, 2]
    sequential = train_models(bp, digits.train, RECIPE, seeds, mode="sequential")
    pooled = train_models(bp, digits.train, RECIPE, seeds, mode="process", jobs=2)
    assert pooled.mode == "process"
    for a, b in zip(sequential.models, pooled.models, strict=True):
        assert identical(a, b)
    assert pooled.workers and all(w["threads"] == 1 for w in pooled.workers)
    assert all(w["OMP_WAIT_POLICY"] == os.environ["OMP_WAIT_POLICY"] for w in pooled.workers)


@pytest.mark.parametrize(
    ("model", "recipe", "tolerance"),
    [
        # weight decay 10x the digits value so that a wrong decay term would move weights by more than the tolerance
        ("mlp", Recipe(epochs=2, batch_size=64, lr=0.05, weight_decay=5e-3), 1e-4),
        ("mlp", Recipe(epochs=2, batch_size=64, lr=0.05, augment="crop-flip"), 1e-4),
        ("mlp", Recipe(epochs=2, batch_size=100, lr=0.05, momentum=0.0, weight_decay=0.0, schedule="constant"), 1e-4),
        # batched convolutions round differently; a ReLU or max-pool tie can amplify that to ~1e-4
        ("small-cnn", RECIPE, 1e-3),
    ],
    ids=["mlp", "mlp-crop-flip", "mlp-plain-sgd", "small-cnn"],
)
def test_vmap_is_close_to_sequential(digits, model, recipe, tolerance):
    bp = blueprint(digits, model)
    seeds = [0, 1, 2]
    sequential = train_models(bp, digits.train, recipe, seeds, mode="sequential")
    vmapped = train_models(bp, digits.train, recipe, seeds, mode="vmap", chunk_size=2)  # two chunks: 2 + 1
    assert vmapped.mode == "vmap" and vmapped.chunk_size == 2
    for a, b in zip(sequential.models, vmapped.models, strict=True):
        assert max_difference(a, b) < tolerance
        assert abs(accuracy(a, digits.test) - accuracy(b, digits.test)) <= 1 / len(digits.test)


def test_vmap_refuses_batchnorm(digits):
    bp = blueprint(digits, "resnet18")
    assert not vmap_supported(bp.build(0))
    assert vmap_supported(blueprint(digits, "small-cnn").build(0))
    with pytest.raises(UserError, match="BatchNorm"):
        train_models(bp, digits.train, RECIPE, [0], mode="vmap")


def test_auto_never_picks_vmap_for_batchnorm(digits):
    small = digits.train.subset(range(32))
    mode, timings = choose_mode(blueprint(digits, "resnet18"), small, Recipe(epochs=1, batch_size=8, lr=0.05), 4, "cpu", 2)
    assert "vmap" not in timings and mode in timings


def test_auto_measures_and_chooses_the_fastest(digits):
    bp = blueprint(digits, "mlp")
    mode, timings = choose_mode(bp, digits.train, RECIPE, 8, "cpu", 2)
    assert set(timings) == {"sequential", "vmap", "process"}
    assert all(t > 0 for t in timings.values()) and mode == min(timings, key=timings.get)
    assert set(choose_mode(bp, digits.train, RECIPE, 8, "cpu", 1)[1]) == {"sequential", "vmap"}  # no pool of 1
    bank = train_models(bp, digits.train, RECIPE, [0, 1, 2], jobs=1)  # "auto" by default; jobs=1 spawns no pool
    assert bank.mode in MODES and bank.mode == min(bank.step_seconds, key=bank.step_seconds.get)
    assert len(bank.models) == 3 and 0 < bank.calibration_seconds < bank.seconds


def test_pool_speedup_model():
    assert _pool_speedup(2, 2, 0.0) == 2.0  # two idle CPUs: twice one process
    assert _pool_speedup(4, 2, 0.0) == 2.0  # never more than the CPUs
    assert 1.0 < _pool_speedup(2, 2, 2.0) < 2.0  # beside busy processes a fair share still grows with workers


@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_divergence_is_reported(digits, mode):
    with pytest.raises(Diverged, match="NaN or infinite"):
        train_models(blueprint(digits, "mlp"), digits.train, Recipe(epochs=1, batch_size=64, lr=1e6), [0, 1], mode=mode)


@pytest.mark.parametrize(
    ("seeds", "kwargs", "message"),
    [
        ([], {}, "at least one seed"),
        ([0, 1, 0], {}, "repeated: 0"),
        ([0], {"mode": "parallel"}, "unknown bank training mode"),
        ([0], {"mode": "process", "device": "meta"}, "CPU only"),
        ([0], {"jobs": 0}, "jobs"),
    ],
)
def test_bad_input_is_a_user_error(digits, seeds, kwargs, message):
    with pytest.raises(UserError, match=message):
        train_models(blueprint(digits, "mlp"), digits.train, RECIPE, seeds, **kwargs)
