"""Uniform forgetting: fine-tune on the retain set while pushing forget-set outputs towards uniform."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.methods import Method, SGDHParams, Track, UnlearnRequest, sgd_fit
from unlearn.methods.base import NonNegativeFloat, PositiveFloat, PositiveInt
from unlearn.train import Phase, cross_entropy


@dataclass(frozen=True)
class UniformForgetHParams(SGDHParams):
    """Defaults of this example; the benchmark's `hparams:` section or --hparam override them."""

    epochs: PositiveInt = 5
    lr: PositiveFloat = 0.01
    batch_size: PositiveInt = 64
    forget_weight: NonNegativeFloat = 1.0


class UniformForget(Method):
    """Fine-tune on the retain set while pushing forget-set outputs towards uniform.

    Each epoch: one pass over the forget set minimising the cross-entropy between the
    model's softmax and the uniform distribution (scaled by `forget_weight`), then one
    pass over the retain set with the usual cross-entropy. Full track (uses retain data).
    """

    HParams = UniformForgetHParams

    @property
    def track(self) -> Track:
        return Track.FULL

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: UniformForgetHParams = self.hparams

        def towards_uniform(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            return -hp.forget_weight * F.log_softmax(model(x), dim=1).mean()

        phases = [
            Phase(request.forget, towards_uniform, hp.batch_size),
            Phase(request.require_retain(), cross_entropy, hp.batch_size),
        ]
        return sgd_fit(request.model, phases, hp, request, "uniform-forget")
