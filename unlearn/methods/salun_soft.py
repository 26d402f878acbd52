"""SalUn-soft: the RL loop with a soft threshold on the weight change after every step (SalUn's proximal variant)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unlearn.gradients import trainable
from unlearn.methods.base import (
    METHODS,
    Fraction,
    Method,
    PositiveFloat,
    PositiveInt,
    SGDHParams,
    UnlearnRequest,
    sgd_fit,
)
from unlearn.methods.random_label import random_label_phases


@dataclass(frozen=True)
class SalUnSoftHParams(SGDHParams):
    """Defaults of SalUn (CIFAR-10): 10 epochs, lr 0.013, batch 256, SGD momentum 0.9, wd 5e-4, γ = 0.5.

    `ratio` is γ: after step t of T, the int(γ·(T − t)/T·n) smallest weight changes go back to θ0.
    """

    epochs: PositiveInt = 10
    lr: PositiveFloat = 0.013
    ratio: Fraction = 0.5


def threshold_count(ratio: float, step: int, total_steps: int, n_params: int) -> int:
    """k after step `step` (1-based) of `total_steps`: int(γ·(T − t)/T·n), the reference's arithmetic."""
    return int(ratio * ((total_steps - step) / total_steps * n_params))


@torch.no_grad()
def soft_threshold_(params: Sequence[Tensor], theta0: Tensor, k: int) -> None:
    """Soft-threshold Δ = θ − θ0 in place with τ = the k-th smallest |Δ| over all `params` together.

    Entries with |Δ| ≤ τ (at least k of them) return to θ0; the others move τ towards θ0.
    k = 0 leaves the weights unchanged.
    """
    if k <= 0:
        return
    flat = torch.cat([p.detach().flatten() for p in params])
    delta = flat - theta0
    tau = delta.abs().kthvalue(k).values
    new = torch.where(delta > tau, flat - tau, torch.where(delta < -tau, flat + tau, theta0))
    start = 0
    for p in params:
        p.copy_(new[start : start + p.numel()].view_as(p))
        start += p.numel()


@METHODS.register("salun-soft")
class SalUnSoft(Method):
    """Soft-thresholding SalUn: RL updates, then after every step a soft threshold on θ − θ0.

    Reference: OPTML-Group/Unlearn-Saliency `Classification/unlearn/RL_pro.py`
    (`RL_proximal`, the README's "Soft-thresholding Salun"). After every optimiser step:
    k = int(γ·(T − t)/T·n) with T the total number of steps and n the number of weights,
    τ = the k-th smallest |θ − θ0| over all weights together, and
    θ ← θ − τ where θ − θ0 > τ, θ + τ where θ − θ0 < −τ, θ0 elsewhere. No saliency mask
    is used (the reference ignores it) and momentum buffers are left as they are (as the
    reference). The loop and optimiser are SalUn's RL loop (D_f with random labels fresh
    per batch, then D_r; SGD momentum 0.9, wd 5e-4).

    Differences from the reference:

    - θ0 is the weights at the start of unlearning for the whole run; the reference takes
      them afresh at the start of every epoch (the function runs once per epoch).
    - t counts every step of the run, 1..T, so k decreases at each step and is 0 (no
      threshold) after the last one; the reference's CIFAR branch uses t = e·S + 1 for every
      step of epoch e (S steps an epoch), its SVHN retain loop counts retain batches only.
    - The loop is sequential (D_f with random labels, then D_r) in every case, as SalUn's RL;
      the reference's CIFAR branch instead shuffles D_f, with labels drawn once per epoch,
      together with D_r.
    - γ defaults to SalUn's 0.5: the reference reads an `args.mask_ratio` that its argument
      parser does not define. lr defaults to SalUn's 0.013 (its README runs both at 0.1).
    - Random labels come from the cell seed's generator.
    """

    paper = "https://arxiv.org/abs/2310.12508"
    HParams = SalUnSoftHParams
    search = {"lr": (0.002, 0.005, 0.013, 0.03), "ratio": (0.3, 0.5, 0.7)}

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: SalUnSoftHParams = self.hparams
        model = request.model
        params = list(trainable(model).values())
        theta0 = torch.cat([p.detach().flatten() for p in params]).clone()
        phases = random_label_phases(request, hp.batch_size)
        total_steps = hp.epochs * sum(math.ceil(len(phase.data) / phase.batch_size) for phase in phases)
        step = 0

        def threshold(_model: nn.Module, _optimizer: torch.optim.Optimizer) -> None:
            nonlocal step
            step += 1
            soft_threshold_(params, theta0, threshold_count(hp.ratio, step, total_steps, theta0.numel()))

        return sgd_fit(model, phases, hp, request, "salun-soft", after_step=threshold)
