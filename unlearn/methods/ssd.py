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
    """Reference defaults (if-loops/selective-synaptic-dampening, ResNet-18): α = 10, λ = 1, batch 64 or 128.

    `alpha` is the selection weighting α (the paper uses 5 or 25 for ViT, 50 for
    PinsFaceRecognition), `dampening` the dampening constant λ (0.1 for
    PinsFaceRecognition). `exponent` and `lower_bound` are the reference's fixed 1 and
    1: the dampening factor is (λ·[]_D / []_Df)^exponent, capped at `lower_bound`.
    `batch_size` None means the reference's batch size for the cell's kind of forget
    set (see `reference_batch_size`); a number overrides it for every kind.
    """

    alpha: PositiveFloat = 10.0
    dampening: PositiveFloat = 1.0
    exponent: PositiveFloat = 1.0
    lower_bound: Fraction = 1.0
    batch_size: PositiveInt | None = None


CLASSWISE_BATCH_SIZE = 64
"""The reference's batch size in its full-class and sub-class forgetting scripts."""
RANDOM_BATCH_SIZE = 128
"""The reference's batch size in its random-forgetting script (`forget_random_main.py`)."""


def reference_batch_size(request: UnlearnRequest) -> int:
    """The reference's batch size for the request's forget set: 64 when class-wise, 128 otherwise."""
    return CLASSWISE_BATCH_SIZE if request.forget_classes else RANDOM_BATCH_SIZE


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
    a dataset is the mean over its mini-batches (unshuffled, as the reference's
    loaders) of the squared gradient of the batch-mean cross-entropy, for every
    parameter; D is the retain set followed by the forget set (the reference's
    ConcatDataset(retain, forget)); every entry with []_Df > α·[]_D is multiplied by
    min(λ·[]_D/[]_Df, 1). No training loop.

    Batch size: the reference sets it per script, not per method: 64 in its full-class
    and sub-class forgetting scripts, 128 in `forget_random_main.py`. By default SSD
    follows it by the kind of forget set: 64 when the request names forgotten classes
    (`forget_classes`: class and worst-case-class sets), 128 for any other set (random,
    worst-case, corrective; this suite has no sub-class sets). It matters: on digits'
    random:0.1 sets (α = 10, λ = 1, seeds 0, 1, 2) batch 64 dampens 113, 17 and 194
    weights, batch 128 818, 24 and 759. An explicit `batch_size` wins over both;
    `request.info` reports the batch size used.

    Deliberate differences: none in the computation. `lower_bound` must lie in (0, 1]
    (the reference accepts any value; above 1 it could grow weights, which SSD by
    construction never does). Gradients are taken with autograd.grad instead of
    `.backward()`, so the model's `.grad` fields are untouched.
    """

    paper = "https://arxiv.org/abs/2308.07707"
    HParams = SSDHParams
    search = {"alpha": (2.0, 5.0, 10.0, 25.0), "dampening": (0.1, 0.5, 1.0)}

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: SSDHParams = self.hparams
        model = request.model
        model.eval()
        batch_size = hp.batch_size or reference_batch_size(request)
        request.info["batch_size"] = batch_size
        forget = request.require_forget()
        imp_forget = importances(model, forget, batch_size)
        imp_full = importances(model, request.require_retain().concat(forget), batch_size)
        dampen(model, imp_full, imp_forget, hp)
        return model
