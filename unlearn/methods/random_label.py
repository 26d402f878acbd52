"""RL: random-label forgetting (a pass over D_f with random labels, then a pass over D_r)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unlearn.methods.base import METHODS, Method, PositiveFloat, PositiveInt, SGDHParams, Track, UnlearnRequest, sgd_fit
from unlearn.train import Phase, cross_entropy


@dataclass(frozen=True)
class RandomLabelHParams(SGDHParams):
    """Reference defaults (SalUn's RL loop and optimiser): 10 epochs, lr 0.013, batch 256.

    `retain=False` is the language-model paper's variant: fine-tune on the forget
    inputs with random labels only, with no retain pass (forget-only track).
    """

    epochs: PositiveInt = 10
    lr: PositiveFloat = 0.013
    retain: bool = True


@METHODS.register("random-label")
class RandomLabel(Method):
    """RL: each epoch one pass over D_f with uniformly random labels, then one over D_r with true labels.

    As the reference (SalUn `RL.py`, CIFAR-10 branch): labels are drawn uniformly from
    all C classes afresh for every batch (they may equal the true label); the two passes
    are sequential with weight 1, CE loss, SGD. Random labels come from a generator
    seeded by the cell seed instead of the global RNG.
    """

    paper = "https://arxiv.org/abs/1911.04933"
    kinds = ("classification", "language")
    HParams = RandomLabelHParams
    search = {"lr": (0.002, 0.005, 0.013, 0.03), "epochs": (5, 10)}

    @property
    def track(self) -> Track:
        return Track.FULL if self.hparams.retain else Track.FORGET_ONLY

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: RandomLabelHParams = self.hparams
        phases = random_label_phases(request, hp.batch_size, retain=hp.retain)
        return sgd_fit(request.model, phases, hp, request, "random-label")


def random_label_phases(request: UnlearnRequest, batch_size: int, retain: bool = True) -> list[Phase]:
    """RL's epoch: D_f with uniformly random labels (fresh per batch), then D_r with true labels if `retain`.

    Shared by the SalUn family, which runs this loop with masked or thresholded updates.
    """
    labels = request.generator("random-labels")

    def random_label_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        y_random = torch.randint(0, request.num_classes, y.shape, generator=labels).to(y.device)
        return cross_entropy(model, x, y_random)

    phases = [Phase(request.forget, random_label_loss, batch_size)]
    if retain:
        phases.append(Phase(request.require_retain(), cross_entropy, batch_size))
    return phases
