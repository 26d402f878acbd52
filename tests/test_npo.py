"""NPO: its loss against the formula on a hand-made classifier, forgetting on digits, and on a tiny language model."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_grid, make_request
from tiny_lm import answer_log_likelihood, lm_request, tiny_lm
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.forget import ForgetSpec, load_or_build
from unlearn.harness import Workspace
from unlearn.methods import METHODS, Track, make_hparams
from unlearn.methods.base import frozen_copy
from unlearn.methods.npo import npo_loss


def npo(**hparams):
    cls = METHODS.get("npo")
    return cls(make_hparams(cls, "npo", hparams))


def linear(weight: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer


def log_softmax_by_hand(weight: list[list[float]], x: list[float], label: int) -> float:
    logits = [sum(w * v for w, v in zip(row, x, strict=True)) for row in weight]
    return logits[label] - math.log(sum(math.exp(z) for z in logits))


W_MODEL = [[1.0, -0.5], [0.2, 0.3], [-1.0, 2.0]]
W_REF = [[0.5, 0.5], [-0.3, 1.0], [0.4, -0.2]]
X = [[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]]
Y = [0, 2, 1]


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_the_loss_is_the_formula_on_a_hand_made_classifier(beta):
    x, y = torch.tensor(X), torch.tensor(Y)
    expected = 0.0
    for xi, yi in zip(X, Y, strict=True):
        ratio = log_softmax_by_hand(W_MODEL, xi, yi) - log_softmax_by_hand(W_REF, xi, yi)
        expected += 2 / beta * math.log1p(math.exp(beta * ratio)) / len(X)
    model, reference = linear(W_MODEL), frozen_copy(linear(W_REF))
    value = npo_loss(model, reference, x, y, beta)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    assert model.weight.grad is not None and reference.weight.grad is None


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_at_the_reference_each_term_is_2_log_2_over_beta_and_the_gradient_is_gradient_ascents(beta):
    x, y = torch.tensor(X), torch.tensor(Y)
    model = linear(W_MODEL)
    value = npo_loss(model, frozen_copy(model), x, y, beta)
    assert value.item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    (grad,) = torch.autograd.grad(value, model.weight)
    (ascent,) = torch.autograd.grad(-F.cross_entropy(model(x), y), model.weight)
    torch.testing.assert_close(grad, ascent)


@pytest.fixture(scope="module")
def digits(digits_spec, digits_kind, shared_cache, tmp_path_factory):
    """(trained original model, class:3 splits) of the digits benchmark, seed 0."""
    workspace = Workspace.at(tmp_path_factory.mktemp("npo"), cache_dir=shared_cache)
    runner = make_grid(digits_spec, digits_kind, workspace, ["finetune"], ["class:3"], [0])
    manifest = load_or_build(workspace.forget_dir, ForgetSpec.parse("class:3"), digits_kind.dataset, 0)
    return runner.models.load_or_train_original(0).model, digits_kind.splits(manifest)


def accuracy(model: nn.Module, data: TensorData) -> float:
    model.eval()
    with torch.no_grad():
        return (model(data.x).argmax(1) == data.y).float().mean().item()


@pytest.mark.parametrize("retain", [True, False])
def test_npo_forgets_a_digits_class(retain, digits_kind, digits):
    original, splits = digits
    method = npo(epochs=2, lr=1e-3, retain=retain)
    assert method.track is (Track.FULL if retain else Track.FORGET_ONLY)
    request = make_request(digits_kind, copy.deepcopy(original), splits["forget"], splits["retain"] if retain else None)
    model = method.unlearn(request)
    forget_before, forget_after = accuracy(original, splits["forget"]), accuracy(model, splits["forget"])
    assert forget_before > 0.95
    assert forget_after < forget_before - 0.25
    assert accuracy(model, splits["retain"]) > 0.9


@pytest.fixture(scope="module")
def tiny():
    return tiny_lm()


def test_npo_lowers_a_language_models_likelihood_of_the_forget_answers(tiny):
    model, forget, retain = tiny
    runs = {}
    for keep in (True, False):
        method = npo(epochs=2, lr=1e-3, retain=keep)
        runs[keep] = method.unlearn(lm_request(model, forget, retain if keep else None, method.track))
    before = answer_log_likelihood(model, forget)
    for unlearned in runs.values():
        assert answer_log_likelihood(unlearned, forget) < before - 0.2
    # The retain term keeps the other task's answers likelier than NPO on the forget set alone does.
    assert answer_log_likelihood(runs[True], retain) > answer_log_likelihood(runs[False], retain)
