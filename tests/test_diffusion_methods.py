"""The diffusion unlearning methods: diffusion-finetune, diffusion-grad-ascent, diffusion-salun and esd, on the
session's tiny digits DDPM (short runs: they check direction and contracts, not final quality)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import make_diffusion_request

from unlearn.errors import Diverged, UserError
from unlearn.methods import METHODS, Track, make_hparams
from unlearn.methods.diffusion_salun import DiffusionSalUn, substitute_classes

NAMES = ("diffusion-finetune", "diffusion-grad-ascent", "diffusion-salun", "esd")
TRACKS = {"diffusion-finetune": Track.FULL, "diffusion-grad-ascent": Track.FORGET_ONLY,
          "diffusion-salun": Track.FULL, "esd": Track.FORGET_ONLY}
FORGET, SUBSTITUTE, RETAIN = 3, 4, 5
SMALL = {"iterations": 2, "batch_size": 16}
"""Two steps: enough to compare runs bit for bit."""


def request_for(name, model, digits_kind, seed=0):
    return make_diffusion_request(copy.deepcopy(model), digits_kind.dataset.train, [FORGET], TRACKS[name], seed)


def run(name, request, **hparams):
    cls = METHODS.get(name)
    return cls(make_hparams(cls, name, hparams)).unlearn(request)


def images(digits_kind, label, n=64):
    train = digits_kind.dataset.train
    return train.x[train.y == label][:n]


@pytest.fixture(scope="module")
def probes(tiny_ddpm, digits_kind):
    """Fixed noised forget and retain images: (x_t, t) of class FORGET and of class RETAIN."""
    gen = torch.Generator().manual_seed(123)
    forget = tiny_ddpm.noised(images(digits_kind, FORGET), gen)[:2]
    retain = tiny_ddpm.noised(images(digits_kind, RETAIN), gen)[:2]
    return forget, retain


@torch.no_grad()
def eps(model, probe, label):
    """ε_θ of the probe images for `label` (this UNet has no dropout, so the module's mode does not matter)."""
    x_t, t = probe
    return model(x_t, t, torch.full((len(x_t),), label))


@torch.no_grad()
def ddpm_loss(model, digits_kind, label):
    """The conditional DDPM loss of class `label` with fixed noise (no label dropout)."""
    x = images(digits_kind, label, n=128)
    return model.loss(x, torch.full((len(x),), label), torch.Generator().manual_seed(7), 0.0).item()


def same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.fixture(scope="module")
def salun_run(tiny_ddpm, digits_kind):
    """(request, unlearned model, hyperparameters) of one short diffusion-salun run forgetting class FORGET."""
    hp = make_hparams(DiffusionSalUn, "diffusion-salun", {"iterations": 15, "batch_size": 32, "lr": 3e-4, "alpha": 0.05})
    request = request_for("diffusion-salun", tiny_ddpm, digits_kind)
    return request, DiffusionSalUn(hp).unlearn(request), hp


def test_salun_sends_the_forget_class_to_the_next_class_and_keeps_the_others(salun_run, tiny_ddpm, digits_kind, probes):
    _, model, _ = salun_run
    forget, retain = probes
    gap_before = F.mse_loss(eps(tiny_ddpm, forget, FORGET), eps(tiny_ddpm, forget, SUBSTITUTE)).item()
    gap_after = F.mse_loss(eps(model, forget, FORGET), eps(model, forget, SUBSTITUTE)).item()
    assert gap_after < 0.4 * gap_before
    forget_moved = F.mse_loss(eps(model, forget, FORGET), eps(tiny_ddpm, forget, FORGET)).item()
    retain_moved = F.mse_loss(eps(model, retain, RETAIN), eps(tiny_ddpm, retain, RETAIN)).item()
    assert retain_moved < 0.6 * forget_moved
    assert ddpm_loss(model, digits_kind, RETAIN) < 1.1 * ddpm_loss(tiny_ddpm, digits_kind, RETAIN)


def test_salun_leaves_masked_out_weights_exactly_unchanged_and_records_the_mask(salun_run, tiny_ddpm, digits_kind):
    request, model, hp = salun_run
    mask = DiffusionSalUn(hp).mask(request_for("diffusion-salun", tiny_ddpm, digits_kind))
    before, after = dict(tiny_ddpm.named_parameters()), dict(model.named_parameters())
    changed = 0
    for name, keep in mask.masks.items():
        assert torch.equal(after[name][~keep], before[name][~keep]), name
        changed += int((after[name][keep] != before[name][keep]).sum())
    assert changed > 0.5 * mask.kept()
    assert request.info["mask_kept_fraction"] == pytest.approx(0.5, abs=1e-4)
    assert request.info["substitute_classes"] == {str(FORGET): SUBSTITUTE}


def test_substitute_classes_skip_forgotten_ones_and_wrap_around():
    table = substitute_classes((3, 4, 9), 10).tolist()
    assert (table[3], table[4], table[9], table[8]) == (5, 5, 0, 0)
    assert substitute_classes((), 10).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    with pytest.raises(UserError, match="remaining class"):
        substitute_classes(tuple(range(10)), 10)


def test_grad_ascent_raises_the_forget_class_loss(tiny_ddpm, digits_kind):
    model = run("diffusion-grad-ascent", request_for("diffusion-grad-ascent", tiny_ddpm, digits_kind),
                iterations=10, batch_size=32)
    assert ddpm_loss(model, digits_kind, FORGET) > 1.5 * ddpm_loss(tiny_ddpm, digits_kind, FORGET)


def test_grad_ascent_with_a_huge_learning_rate_is_diverged(tiny_ddpm, digits_kind):
    with pytest.raises(Diverged):
        run("diffusion-grad-ascent", request_for("diffusion-grad-ascent", tiny_ddpm, digits_kind),
            iterations=3, batch_size=16, lr=1e6)


def test_finetune_keeps_the_retain_loss_and_never_reads_the_forget_set(tiny_ddpm, digits_kind):
    hp = {"iterations": 6, "batch_size": 32}
    request = request_for("diffusion-finetune", tiny_ddpm, digits_kind)
    model = run("diffusion-finetune", request, **hp)
    assert ddpm_loss(model, digits_kind, RETAIN) < 1.05 * ddpm_loss(tiny_ddpm, digits_kind, RETAIN)
    blind = dataclasses.replace(request, model=copy.deepcopy(tiny_ddpm), forget=None)
    assert same_weights(run("diffusion-finetune", blind, **hp), model)


def test_esd_moves_the_forget_class_towards_the_negatively_guided_target(tiny_ddpm, digits_kind, probes):
    forget, _ = probes
    eta = 1.0
    cond, uncond = eps(tiny_ddpm, forget, FORGET), eps(tiny_ddpm, forget, tiny_ddpm.null_class)
    target = uncond - eta * (cond - uncond)
    model = run("esd", request_for("esd", tiny_ddpm, digits_kind), iterations=12, batch_size=32, lr=3e-4, eta=eta)
    before = F.mse_loss(cond, target).item()
    assert F.mse_loss(eps(model, forget, FORGET), target).item() < 0.5 * before


@pytest.mark.parametrize("name", NAMES)
def test_each_method_is_deterministic_for_a_seed_and_declares_its_kind_and_track(name, tiny_ddpm, digits_kind):
    cls = METHODS.get(name)
    assert cls.kinds == ("generation",) and cls().track is TRACKS[name]
    first = run(name, request_for(name, tiny_ddpm, digits_kind, seed=0), **SMALL)
    again = run(name, request_for(name, tiny_ddpm, digits_kind, seed=0), **SMALL)
    other = run(name, request_for(name, tiny_ddpm, digits_kind, seed=1), **SMALL)
    assert same_weights(first, again)
    assert not same_weights(first, other)
    assert not same_weights(first, tiny_ddpm)


@pytest.mark.parametrize(
    "name, values",
    [
        ("diffusion-finetune", {"lr": -1e-4}),
        ("diffusion-grad-ascent", {"iterations": 0}),
        ("diffusion-salun", {"ratio": 1.5}),
        ("diffusion-salun", {"alpha": -1e-3}),
        ("esd", {"eta": -1.0}),
        ("esd", {"batch_size": 0}),
    ],
)
def test_nonsense_hyperparameters_are_refused(name, values):
    with pytest.raises(UserError, match=rf"{name}\.{next(iter(values))}"):
        make_hparams(METHODS.get(name), name, values)


def test_reference_defaults():
    assert make_hparams(METHODS.get("diffusion-salun"), "diffusion-salun", {}) == DiffusionSalUn.HParams(
        iterations=1000, batch_size=128, lr=1e-4, max_grad_norm=1.0, ratio=0.5, alpha=1e-3
    )
    esd = METHODS.get("esd").HParams()
    assert (esd.iterations, esd.lr, esd.eta, esd.max_grad_norm) == (1000, 1e-5, 1.0, 1.0)
