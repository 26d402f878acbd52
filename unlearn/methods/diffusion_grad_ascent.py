"""GA for diffusion: gradient ascent on the forget class's DDPM loss (SalUn's "Variant GA").

Reference: continual-and-generation.md ("Variant GA: −DDPM loss on the forget class") with SalUn's diffusion
optimisation settings (OPTML-Group/Unlearn-Saliency `DDPM/runners/diffusion.py`, `saliency_unlearn` with
`--method ga`: 1000 iterations, batch 128, Adam lr 1e-4, gradient norm clipped to 1). Differences:

- Forget-only: the reference code adds α·(DDPM loss on D_r), α = 1e-3, to the ascent term; this baseline is
  the pure ascent of the reference text, so it needs no retain data.
- The forget images are always conditioned on their own (forgotten) label; the reference's loss keeps the
  model's 0.1 label dropout, so about a tenth of its ascent pushes the unconditional model.
- t is drawn uniformly per image (the reference pairs t with T − 1 − t), and the loss is the per-entry mean
  of the squared error, not its per-image sum (with Adam this matters only through the clipping).

GA diverges easily; a NaN or infinite loss ends the cell as a failed record (`Diverged`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearn.methods.base import METHODS, Method, Track, UnlearnRequest
from unlearn.methods.diffusion_common import DiffusionHParams, adam_fit
from unlearn.models.diffusion import DiffusionLoss
from unlearn.train import Phase


@dataclass(frozen=True)
class DiffusionGradAscentHParams(DiffusionHParams):
    """SalUn's diffusion settings: 1000 iterations, batch 128, Adam lr 1e-4, gradient norm clipped to 1."""


@METHODS.register("diffusion-grad-ascent")
class DiffusionGradAscent(Method):
    """GA for diffusion: minimise −(ε-MSE of the forget images conditioned on their label), Adam, forget data only."""

    paper = "https://arxiv.org/abs/2310.12508"
    docs = "docs/generation.md#methods"
    HParams = DiffusionGradAscentHParams
    search = {"lr": (1e-6, 1e-5, 1e-4), "iterations": (100, 300, 1000)}
    kinds = ("generation",)

    @property
    def track(self) -> Track:
        return Track.FORGET_ONLY

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: DiffusionGradAscentHParams = self.hparams
        loss = DiffusionLoss(request.generator("noise"), p_uncond=0.0, sign=-1.0)
        phase = Phase(request.require_forget(), loss, hp.batch_size)
        return adam_fit(request.model, phase, hp, request, "diffusion-grad-ascent")
