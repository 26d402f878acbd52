"""Score Forgetting Distillation: a data-free one-step generator whose forgotten class follows a safe class."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_diffusion_request

from unlearn.errors import Diverged, UserError
from unlearn.methods import Track, make_hparams, resolve_method
from unlearn.methods.base import frozen_copy
from unlearn.methods.sfd import SFD, override_classes
from unlearn.models.diffusion import ClassConditionalDDPM, GeneratorBlueprint

FORGET, SAFE = 3, 4
"""The forgotten class and its default override class, (3 + 1) mod 10."""
TINY = {"iterations": 2, "batch_size": 8}


def run_sfd(model, data, seed: int = 0, **hparams):
    """(the returned generator, the request) of SFD on a copy of `model`, forgetting FORGET."""
    request = make_diffusion_request(copy.deepcopy(model), data, [FORGET], Track.DATA_FREE, seed)
    out = SFD(make_hparams(SFD, "sfd", {**TINY, **hparams})).unlearn(request)
    return out, request


@pytest.fixture(scope="module")
def short_runs(tiny_ddpm, digits_kind):
    """Two runs with seed 0 and one with seed 1, two iterations each."""
    data = digits_kind.dataset.train
    return [run_sfd(tiny_ddpm, data, seed) for seed in (0, 0, 1)]


def test_sfd_runs_data_free_and_returns_a_one_step_generator(short_runs):
    out, request = short_runs[0]
    assert request.forget is None and request.retain is None
    assert resolve_method("sfd")().track is Track.DATA_FREE and SFD.kinds == ("generation",)
    assert isinstance(out, ClassConditionalDDPM) and out.is_one_step and int(out.one_step_t) == 440
    assert all(bool(torch.isfinite(t).all()) for t in out.state_dict().values() if t.is_floating_point())
    assert request.info["one_step_t"] == 440 and request.info["override_classes"] == {str(FORGET): SAFE}
    assert request.info["iterations"] == 2 and request.info["ema_decay"] == 0.0

    calls = []
    handle = out.unet.register_forward_hook(lambda *args: calls.append(1))
    images = out.sample(torch.tensor([0, FORGET, 9]), steps=50, guidance=2.0, gen=torch.Generator().manual_seed(0))
    handle.remove()
    assert len(calls) == 1, "a one-step generator samples in one network evaluation"
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1

    fresh = GeneratorBlueprint("ddpm-unet", 1, (8, 8), 10).build(0)
    fresh.load_state_dict(out.state_dict())
    assert int(fresh.one_step_t) == 440, "t* travels with the weights"


def test_sfd_is_deterministic_for_a_seed_and_depends_on_it(short_runs):
    (a, _), (b, _), (c, _) = short_runs
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@torch.no_grad()
def distance_to_safe_class(generator, teacher, z):
    """Mean squared distance of the generator's forget-class samples to the teacher's one-step safe-class output."""
    x = generator.one_step(z, torch.full((len(z),), FORGET))
    return float((x - teacher.one_step(z, torch.full((len(z),), SAFE))).square().flatten(1).sum(1).mean())


@torch.no_grad()
def safe_class_margin(generator, teacher, z, gen):
    """How much better the teacher denoises the generator's forget-class samples as the safe class than as the
    forgotten one (the DDPM loss with c_o minus with c_f, a diffusion classifier's log-odds): lower is more like
    the safe class."""
    x = generator.one_step(z, torch.full((len(z),), FORGET))
    eps = torch.randn(x.shape, generator=gen)
    t = torch.randint(100, 600, (len(z),), generator=gen)
    x_t = teacher.add_noise(x, eps, t)
    err = [(teacher(x_t, t, torch.full((len(z),), c)) - eps).square().flatten(1).sum(1).mean() for c in (SAFE, FORGET)]
    return float(err[0] - err[1])


def test_the_forgetting_term_pulls_the_forgotten_class_toward_the_safe_class(tiny_ddpm, digits_kind):
    teacher = frozen_copy(tiny_ddpm)
    teacher.one_step_t.fill_(440)
    z = torch.randn((128, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    hp = {"iterations": 4, "lr": 1e-4, "ema_decay": 0.0}
    data = digits_kind.dataset.train
    forgetting, _ = run_sfd(tiny_ddpm, data, forget_weight=1.0, **hp)
    plain, _ = run_sfd(tiny_ddpm, data, forget_weight=0.0, **hp)
    assert distance_to_safe_class(forgetting, teacher, z) < 0.6 * distance_to_safe_class(plain, teacher, z)
    margins = [safe_class_margin(m, teacher, z, torch.Generator().manual_seed(2)) for m in (forgetting, plain)]
    assert margins[0] < margins[1] - 1.0


def test_a_huge_learning_rate_raises_diverged(tiny_ddpm, digits_kind):
    with pytest.raises(Diverged, match="NaN or infinite"):
        run_sfd(tiny_ddpm, digits_kind.dataset.train, lr=1e4, batch_size=4)


@pytest.mark.parametrize(
    "values",
    [{"one_step_t": 0}, {"one_step_t": 1000}, {"forget_weight": -0.01}, {"fake_forget_weight": -1.0},
     {"t_min": 712, "t_max": 38}, {"t_max": 1001}, {"ema_decay": 1.0}, {"lr": 0.0}],
)
def test_bad_hyperparameters_are_user_errors(values):
    with pytest.raises(UserError, match="sfd"):
        make_hparams(SFD, "sfd", values)


def test_override_classes_skip_forgotten_classes_and_refuse_impossible_requests():
    assert override_classes((3,), 10, None) == {3: 4}
    assert override_classes((9,), 10, None) == {9: 0}
    assert override_classes((3, 4), 10, None) == {3: 5, 4: 5}
    assert override_classes((3, 4), 10, 0) == {3: 0, 4: 0}
    for forget, override in [((), None), ((3,), 3), ((3,), 10), (tuple(range(10)), None), ((10,), None)]:
        with pytest.raises(UserError, match="sfd"):
            override_classes(forget, 10, override)


def test_sfd_refuses_a_classifier(digits_kind):
    with pytest.raises(UserError, match="class-conditional DDPM"):
        SFD().check(digits_kind.new_model(0))
