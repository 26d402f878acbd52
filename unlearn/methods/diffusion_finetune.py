"""FT for diffusion: fine-tune the class-conditional DDPM on the retain set only (catastrophic forgetting of D_f).

Reference: the ordinary DDPM objective of the base model (continual-and-generation.md: ε-MSE with the null
label dropped in with probability 0.1), run with SalUn's diffusion optimisation settings (1000 iterations,
batch 128, Adam lr 1e-4, gradient norm clipped to 1). SalUn's diffusion code has no FT baseline of its own;
this is the classification suite's FT carried over to the generator. Differences from SalUn's training
loop: t is drawn uniformly per image (the reference pairs t with T − 1 − t, "antithetic sampling"), and the
loss is the per-entry mean of the squared error, not its per-image sum (with Adam this matters only through
the gradient clipping).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearn.methods.base import METHODS, Method, Track, UnlearnRequest
from unlearn.methods.diffusion_common import DiffusionHParams, adam_fit
from unlearn.models.diffusion import P_UNCOND, DiffusionLoss
from unlearn.train import Phase


@dataclass(frozen=True)
class DiffusionFinetuneHParams(DiffusionHParams):
    """SalUn's diffusion settings: 1000 iterations, batch 128, Adam lr 1e-4, gradient norm clipped to 1."""


@METHODS.register("diffusion-finetune")
class DiffusionFinetune(Method):
    """FT for diffusion: the DDPM loss (label dropout 0.1) on the retain set only, with Adam; never reads D_f."""

    paper = "https://arxiv.org/abs/2310.12508"
    docs = "docs/generation.md#methods"
    HParams = DiffusionFinetuneHParams
    search = {"lr": (3e-5, 1e-4, 3e-4), "iterations": (500, 1000, 2000)}
    kinds = ("generation",)

    @property
    def track(self) -> Track:
        return Track.FULL

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: DiffusionFinetuneHParams = self.hparams
        loss = DiffusionLoss(request.generator("noise"), p_uncond=P_UNCOND)
        phase = Phase(request.require_retain(), loss, hp.batch_size)
        return adam_fit(request.model, phase, hp, request, "diffusion-finetune")
