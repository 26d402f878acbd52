"""SSD: selective synaptic dampening (Foster et al.), a single pass with no training loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.gradients import Gradients, mean_squared_gradients, trainable
from unlearn.methods.base import METHODS, Fraction, Method, PositiveFloat, PositiveInt, UnlearnRequest
from unlearn.train import cross_entropy


@dataclass(frozen=True)
class SSDHParams:
    """Reference defaults (if-loops/selective-synaptic-dampening, ResNet-18): α = 10, λ = 1, batch 64.

    `alpha` is the selection weighting α (the paper uses 5 or 25 for ViT, 50 for
    PinsFaceRecognition), `dampening` the dampening constant λ (0.1 for
    PinsFaceRecognition). `exponent` and `lower_bound` are the reference's fixed 1 and
    1: the dampening factor is (λ·[]_D / []_Df)^exponent, capped at `lower_bound`.
    """

    alpha: PositiveFloat = 10.0
    dampening: PositiveFloat = 1.0
    exponent: PositiveFloat = 1.0
    lower_bound: Fraction = 1.0
    batch_size: PositiveInt = 64


def importances(model: nn.Module, data: TensorData, batch_size: int) -> Gradients:
    """SSD's importance of `data`: the mean over mini-batches of the squared gradient of the mean CE."""
    return mean_squared_gradients(model, data, cross_entropy, batch_size)


@torch.no_grad()
def dampen(model: nn.Module, imp_full: Gradients, imp_forget: Gradients, hp: SSDHParams) -> None:
    """θ_i ← min((λ·[]_D,i / []_Df,i)^exponent, lower_bound)·θ_i where []_Df,i > α·[]_D,i; others untouched."""
    for name, p in trainable(model).items():
        full, forget = imp_full[name], imp_forget[name]
        selected = forget > hp.alpha * full
        # Where selected, forget > 0, so the ratio is finite; elsewhere it is never used.
        ratio = torch.where(selected, full * hp.dampening / torch.where(selected, forget, 1.0), 1.0)
        factor = ratio.pow(hp.exponent).clamp(max=hp.lower_bound)
        p.copy_(torch.where(selected, p * factor, p))


@METHODS.register("ssd")
class SSD(Method):
    """SSD: dampen the parameters that matter much more to D_f than to the whole training set D.

    As the reference (if-loops/selective-synaptic-dampening, `ssd.py` ParameterPerturber
    with `ssd_tuning` in forget_*_strategies.py): model in eval mode; the importance of
    a dataset is the mean over its mini-batches (batch 64, unshuffled, as the
    reference's loaders) of the squared gradient of the batch-mean cross-entropy, for
    every parameter; D is the retain set followed by the forget set (the reference's
    ConcatDataset(retain, forget)); every entry with []_Df > α·[]_D is multiplied by
    min(λ·[]_D/[]_Df, 1). No training loop.

    Deliberate differences: none in the computation. `lower_bound` must lie in (0, 1]
    (the reference accepts any value; above 1 it could grow weights, which SSD by
    construction never does). Gradients are taken with autograd.grad instead of
    `.backward()`, so the model's `.grad` fields are untouched.
    """

    HParams = SSDHParams
    search = {"alpha": (2.0, 5.0, 10.0, 25.0), "dampening": (0.1, 0.5, 1.0)}

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: SSDHParams = self.hparams
        model = request.model
        model.eval()
        imp_forget = importances(model, request.forget, hp.batch_size)
        imp_full = importances(model, request.require_retain().concat(request.forget), hp.batch_size)
        dampen(model, imp_full, imp_forget, hp)
        return model
