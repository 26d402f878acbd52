"""ESD (Erased Stable Diffusion, Gandikota et al. 2023) for a class-conditional DDPM: negative guidance.

Reference: continual-and-generation.md ("ESD-style negative guidance"): fine-tune so that
ε_θ(x_t, t, c_f) matches ε*(x_t, t, ∅) − η·(ε*(x_t, t, c_f) − ε*(x_t, t, ∅)) from the frozen original ε*,
with ESD's defaults η = 1, Adam lr 1e-5, 1000 iterations, MSE (per-entry mean). Differences, deliberate:

- x_t: ESD generates it with the model being trained (DDIM from noise, conditioned on c_f, stopped at a random
  step) and so needs no data; here x_t is a forget image noised at t ~ U[0, T), which is the forget-only
  track and far cheaper on CPU.
- Batches of 128 forget images (ESD: one generated image per iteration); gradient norm clipped to 1 as the
  other diffusion methods here (ESD does not clip).
- Every parameter is trained: the class-conditional UNet has no cross-attention, so ESD's choice between
  cross-attention ("ESD-x") and the rest ("ESD-u") does not arise.
- Several forgotten classes: each forget image is erased towards the target of its own label.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.methods.base import METHODS, Method, NonNegativeFloat, PositiveFloat, Track, UnlearnRequest, frozen_copy
from unlearn.methods.diffusion_common import DiffusionHParams, adam_fit
from unlearn.train import Phase


@dataclass(frozen=True)
class ESDHParams(DiffusionHParams):
    """ESD's defaults: 1000 iterations, Adam lr 1e-5, negative guidance η = 1 (`eta`); batch 128 and clip 1 as
    the other diffusion methods of this suite."""

    lr: PositiveFloat = 1e-5
    eta: NonNegativeFloat = 1.0


class NegativeGuidanceLoss:
    """MSE(ε_θ(x_t, t, c), ε*(x_t, t, ∅) − η·(ε*(x_t, t, c) − ε*(x_t, t, ∅))) on noised forget images."""

    def __init__(self, frozen: nn.Module, eta: float, gen: torch.Generator):
        self.frozen, self.eta, self.gen = frozen, eta, gen

    def target(self, x_t: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """The frozen original's negatively guided noise for labels `y`."""
        null = torch.full_like(y, self.frozen.null_class)
        with torch.no_grad():
            eps_c, eps_u = self.frozen(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return eps_u - self.eta * (eps_c - eps_u)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        x_t, t, _ = model.noised(x, self.gen)
        return F.mse_loss(model(x_t, t, y), self.target(x_t, t, y))


@METHODS.register("esd")
class ESD(Method):
    """ESD: fine-tune ε_θ(·, c_f) towards the original's negatively guided ε*(∅) − η(ε*(c_f) − ε*(∅)), forget
    images only (noised at random steps), Adam lr 1e-5."""

    paper = "https://arxiv.org/abs/2303.07345"
    docs = "docs/generation.md#methods"
    HParams = ESDHParams
    search = {"lr": (3e-6, 1e-5, 3e-5), "eta": (0.5, 1.0, 2.0)}
    kinds = ("generation",)

    @property
    def track(self) -> Track:
        return Track.FORGET_ONLY

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: ESDHParams = self.hparams
        loss = NegativeGuidanceLoss(frozen_copy(request.model), hp.eta, request.generator("noise"))
        phase = Phase(request.require_forget(), loss, hp.batch_size)
        return adam_fit(request.model, phase, hp, request, "esd")
