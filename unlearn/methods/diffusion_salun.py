"""SalUn for class-conditional diffusion: a saliency mask from the forget class, then masked "random label"
fine-tuning that sends the forget class's noise prediction to another class's.

Reference: continual-and-generation.md ("SalUn for diffusion") and OPTML-Group/Unlearn-Saliency
`DDPM/runners/diffusion.py` (`generate_mask`, then `saliency_unlearn --method rl --alpha 1e-3`).
Differences, all deliberate:

- Several forgotten classes: each forgotten c maps to the first of (c + 1) mod C, (c + 2) mod C, ... that is
  not forgotten (the reference forgets one class and uses (c_f + 1) mod C); every forget image is
  conditioned on its own label.
- The mask's loss is the plain conditional ε-MSE (the reference text); the reference code ranks the gradient
  of the guided prediction (1 + w)·ε_c − w·ε_u with w = 2 and clips each batch's gradient to norm 1 before
  summing. Both use eval mode and a global top-γ ranking; our batches come in data order (`unlearn.saliency`).
- The forget term conditions on c_f and c' exactly; the reference's forward keeps the model's 0.1 label
  dropout there, so about a tenth of its rows compare unconditional predictions.
- α multiplies the retain DDPM loss in the reference's scale: squared error summed over an image's entries,
  averaged over the batch (our `model.loss` is the per-entry mean, so it is multiplied by C·H·W here);
  the forget term is a per-entry mean, as the reference's `MSELoss`.
- t is drawn uniformly per image (the reference pairs t with T − 1 − t).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.errors import UserError
from unlearn.methods.base import METHODS, Fraction, Method, NonNegativeFloat, Track, UnlearnRequest
from unlearn.methods.diffusion_common import BatchDraws, DiffusionHParams, adam_fit, next_remaining
from unlearn.models.diffusion import DiffusionLoss
from unlearn.saliency import SaliencyMask
from unlearn.train import Phase


@dataclass(frozen=True)
class DiffusionSalUnHParams(DiffusionHParams):
    """Reference defaults (SalUn, CIFAR-10 DDPM): 1000 iterations, batch 128, Adam lr 1e-4, clip 1, γ = 0.5,
    α = 1e-3. `ratio` is γ, the fraction of weights the mask keeps; `alpha` weighs the retain DDPM loss."""

    ratio: Fraction = 0.5
    alpha: NonNegativeFloat = 1e-3


def substitute_classes(forgotten: tuple[int, ...], num_classes: int) -> Tensor:
    """c -> c': the first of (c + 1) mod C, (c + 2) mod C, ... that is not forgotten, for every class c."""
    gone = set(forgotten)
    if len(gone) >= num_classes:
        raise UserError("diffusion-salun needs at least one remaining class to send the forgotten ones to")
    return torch.tensor([next_remaining(c, gone, num_classes) for c in range(num_classes)], dtype=torch.long)


class SalUnDiffusionLoss:
    """MSE(ε_θ(x_t, t, c_f), stopgrad ε_θ(x_t, t, c')) on a forget batch + α·(DDPM loss of a retain batch)."""

    def __init__(self, substitute: Tensor, retain: BatchDraws, gen: torch.Generator, alpha: float):
        self.substitute, self.retain, self.gen, self.alpha = substitute, retain, gen, alpha

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        x_t, t, _ = model.noised(x, self.gen)
        c_sub = self.substitute.to(y.device)[y]
        eps_f, eps_sub = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, c_sub])).chunk(2)
        loss = F.mse_loss(eps_f, eps_sub.detach())
        if self.alpha > 0:
            xr, yr = self.retain.draw()
            loss = loss + self.alpha * xr[0].numel() * model.loss(xr, yr, self.gen)
        return loss


@METHODS.register("diffusion-salun")
class DiffusionSalUn(Method):
    """SalUn for diffusion: mask the top γ of |∇ ε-MSE(c_f)| on D_f, then train ε_θ(·, c_f) towards ε_θ(·, c')
    plus α·DDPM loss on D_r with masked gradients (Adam, clip 1); masked-out weights never change."""

    paper = "https://arxiv.org/abs/2310.12508"
    docs = "docs/generation.md#methods"
    HParams = DiffusionSalUnHParams
    search = {"lr": (3e-5, 1e-4, 3e-4), "ratio": (0.3, 0.5, 0.7)}
    kinds = ("generation",)

    @property
    def track(self) -> Track:
        return Track.FULL

    def mask(self, request: UnlearnRequest) -> SaliencyMask:
        """The saliency mask: |Σ_batches ∇ ε-MSE| of the forget images conditioned on their label, no dropout."""
        hp: DiffusionSalUnHParams = self.hparams
        loss = DiffusionLoss(request.generator("mask"), p_uncond=0.0)
        return SaliencyMask.compute(request.model, request.require_forget(), loss, hp.ratio, hp.batch_size)

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: DiffusionSalUnHParams = self.hparams
        substitute = substitute_classes(request.forget_classes, request.num_classes)
        mask = self.mask(request)
        request.info["mask_kept_fraction"] = mask.kept_fraction()
        request.info["substitute_classes"] = {str(c): int(substitute[c]) for c in request.forget_classes}
        retain = BatchDraws(request.require_retain(), hp.batch_size, request.generator("retain"))
        loss = SalUnDiffusionLoss(substitute, retain, request.generator("noise"), hp.alpha)
        phase = Phase(request.require_forget(), loss, hp.batch_size)

        def mask_gradients(m: nn.Module, _optimizer: torch.optim.Optimizer) -> None:
            mask.apply_to_gradients(m)

        return adam_fit(request.model, phase, hp, request, "diffusion-salun", before_step=mask_gradients)
