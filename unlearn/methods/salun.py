"""SalUn: random-label forgetting restricted to the weights most salient for the forget set."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

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
from unlearn.saliency import SaliencyMask
from unlearn.train import negative_cross_entropy


@dataclass(frozen=True)
class SalUnHParams(SGDHParams):
    """Reference defaults (SalUn, CIFAR-10): 10 epochs, lr 0.013, batch 256, SGD momentum 0.9, wd 5e-4, γ = 0.5.

    `ratio` is γ, the fraction of weights the mask keeps. `mask_path` names a mask saved
    with `SaliencyMask.save` to use instead of computing one (its own ratio then applies).
    The mask is computed with batches of `batch_size`, as the reference.
    """

    epochs: PositiveInt = 10
    lr: PositiveFloat = 0.013
    ratio: Fraction = 0.5
    mask_path: str | None = None


@METHODS.register("salun")
class SalUn(Method):
    """SalUn: a saliency mask from D_f, then the RL loop with masked gradients.

    As the reference (OPTML-Group/Unlearn-Saliency, `Classification/generate_mask.py`
    then `unlearn/RL.py` with a mask): the mask keeps the top γ of all parameter entries
    by |Σ_batches ∇(−CE) on D_f|, computed in eval mode (see `unlearn.saliency`); the
    unlearning loop is RL's (each epoch D_f with uniformly random labels, fresh per
    batch, then D_r with true labels, CE, weight 1), with every gradient multiplied by the
    mask before each SGD step. With the authors' later mask fix: after every step the
    masked-out weights are reset to θ0 (the weights at the start of unlearning) and their
    momentum buffers zeroed, so weight decay and momentum cannot move them. Buffers (BN
    running statistics) are not parameters and are updated as usual, as in the reference.
    Run time includes computing the mask.

    Differences: the mask breaks ties in |g| deterministically and takes the forget batches
    in data order (see `unlearn.saliency`); one version of the reference's mask script
    (commit 2b0a8a1) also stepped an optimiser while accumulating the gradients, ours keeps
    the weights at θ0 as the version at commit ac880a2 does; masks are stored as
    safetensors, never pickles; random labels come from the cell seed's generator.
    """

    paper = "https://arxiv.org/abs/2310.12508"
    kinds = ("classification", "language")
    HParams = SalUnHParams
    search = {"lr": (0.002, 0.005, 0.013, 0.03), "ratio": (0.3, 0.5, 0.7)}

    def check(self, model: nn.Module) -> None:
        hp: SalUnHParams = self.hparams
        if hp.mask_path is not None:
            SaliencyMask.load(hp.mask_path).check_fits(model, f"saliency mask {hp.mask_path}")

    def mask(self, request: UnlearnRequest) -> SaliencyMask:
        """The saliency mask for this request: loaded from `mask_path`, or computed on D_f."""
        hp: SalUnHParams = self.hparams
        model = request.model
        if hp.mask_path is not None:
            mask = SaliencyMask.load(hp.mask_path)
            mask.check_fits(model, f"saliency mask {hp.mask_path}")
            return mask.to(request.device)
        return SaliencyMask.compute(model, request.forget, negative_cross_entropy, hp.ratio, hp.batch_size)

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: SalUnHParams = self.hparams
        model = request.model
        mask = self.mask(request)
        theta0 = {name: p.detach().clone() for name, p in trainable(model).items()}

        def mask_gradients(m: nn.Module, _optimizer: torch.optim.Optimizer) -> None:
            mask.apply_to_gradients(m)

        def reset_masked_out(m: nn.Module, optimizer: torch.optim.Optimizer) -> None:
            mask.reset_masked_out(m, theta0, optimizer)

        phases = random_label_phases(request, hp.batch_size)
        return sgd_fit(model, phases, hp, request, "salun", before_step=mask_gradients, after_step=reset_masked_out)
