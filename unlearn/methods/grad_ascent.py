"""GA: gradient ascent on the forget set's cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearn.methods.base import METHODS, Method, PositiveFloat, PositiveInt, SGDHParams, Track, UnlearnRequest, sgd_fit
from unlearn.train import Phase, negative_cross_entropy


@dataclass(frozen=True)
class GradAscentHParams(SGDHParams):
    """Reference defaults (SalUn README, CIFAR-10): 5 epochs, lr 1e-4, batch 256, SGD momentum 0.9, wd 5e-4.

    `max_grad_norm` (default None: no clipping, as the reference) clips the global
    gradient norm before each step, the remedy the reference notes suggest for GA's
    divergence.
    """

    epochs: PositiveInt = 5
    lr: PositiveFloat = 1e-4
    max_grad_norm: PositiveFloat | None = None


@METHODS.register("grad-ascent")
class GradAscent(Method):
    """GA: minimise −CE on the forget set (model in train mode, as the reference), forget data only.

    GA diverges easily; a NaN or infinite loss or weight makes the cell a failed
    record with the reason instead of a number.
    """

    paper = "https://arxiv.org/abs/2109.13398"
    kinds = ("classification", "language")
    HParams = GradAscentHParams
    search = {"lr": (1e-3, 5e-3, 1e-2), "max_grad_norm": (None, 0.5)}

    @property
    def track(self) -> Track:
        return Track.FORGET_ONLY

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: GradAscentHParams = self.hparams
        phase = Phase(request.forget, negative_cross_entropy, hp.batch_size)
        clip = None
        if hp.max_grad_norm is not None:
            max_norm = hp.max_grad_norm

            def clip(model: nn.Module, _optimizer: torch.optim.Optimizer) -> None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)

        return sgd_fit(request.model, [phase], hp, request, "grad-ascent", before_step=clip)
