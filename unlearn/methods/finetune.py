"""FT: fine-tune the original model on the retain set (catastrophic forgetting of D_f)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearn.methods.base import METHODS, Method, PositiveFloat, PositiveInt, SGDHParams, UnlearnRequest, sgd_fit
from unlearn.train import Phase, cross_entropy


@dataclass(frozen=True)
class FinetuneHParams(SGDHParams):
    """Reference defaults (SalUn code, CIFAR-10): 10 epochs, lr 0.01, batch 256, SGD momentum 0.9, wd 5e-4."""

    epochs: PositiveInt = 10
    lr: PositiveFloat = 0.01


@METHODS.register("finetune")
class Finetune(Method):
    """FT: cross-entropy on the retain set only, SGD at a constant learning rate (as in SalUn's FT)."""

    paper = "https://arxiv.org/abs/2310.12508"
    kinds = ("classification", "language")
    HParams = FinetuneHParams
    search = {"lr": (0.01, 0.03, 0.07, 0.1), "epochs": (10, 30, 60)}

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: FinetuneHParams = self.hparams
        phase = Phase(request.require_retain(), cross_entropy, hp.batch_size)
        return sgd_fit(request.model, [phase], hp, request, "finetune")
