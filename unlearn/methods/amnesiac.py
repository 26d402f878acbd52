"""Amnesiac unlearning: train on D_r together with D_f relabelled to wrong classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.methods.base import METHODS, Method, PositiveFloat, PositiveInt, UnlearnRequest, run_fit
from unlearn.train import Phase, cross_entropy


@dataclass(frozen=True)
class AmnesiacHParams:
    """Reference defaults (SSD repo `amnesiac` + `fit_one_unlearning_cycle`): Adam lr 1e-4 (no weight
    decay), 3 epochs, batch 128."""

    epochs: PositiveInt = 3
    lr: PositiveFloat = 1e-4
    batch_size: PositiveInt = 128


def wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """For each label, a class drawn uniformly from the other `num_classes` − 1 classes."""
    draw = torch.randint(0, num_classes - 1, y.shape, generator=generator).to(y.device)
    return draw + (draw >= y).long()


def amnesiac_data(forget: TensorData, retain: TensorData, num_classes: int, generator: torch.Generator) -> TensorData:
    """D_f with every label replaced once by a random wrong class, followed by D_r with its true labels."""
    return forget.with_labels(wrong_labels(forget.y, num_classes, generator)).concat(retain)


@METHODS.register("amnesiac")
class Amnesiac(Method):
    """Amnesiac: train on D_r plus D_f relabelled once to random wrong classes (Adam, 3 epochs).

    Graves, Nagisetty and Ganesh, AAAI 2021, in its SSD-benchmark form.
    As the reference (if-loops/selective-synaptic-dampening, `forget_random_strategies.py` and
    `forget_full_class_strategies.py::amnesiac` with `unlearn.py::fit_one_unlearning_cycle`):
    each D_f sample gets, once, a label drawn uniformly from the C − 1 classes other than its
    true one; the relabelled D_f and D_r (true labels) are merged and shuffled together, and
    the model trains on CE in train mode with Adam (lr 1e-4, no weight decay), batch 128,
    3 epochs.

    Deliberate differences: the wrong labels are drawn directly (uniform over the other
    classes, the same distribution as the reference's rejection sampling) from a generator
    seeded by the cell seed, and batches are shuffled by another such generator, instead of
    Python's and torch's global RNGs. (The paper's original Amnesiac, which stores and
    subtracts per-batch parameter updates, is not what the benchmarks run.)
    """

    paper = "https://arxiv.org/abs/2010.10981"
    HParams = AmnesiacHParams
    search = {"lr": (1e-4, 1e-3, 1e-2), "epochs": (3, 10)}

    def check(self, model: nn.Module) -> None:
        head = getattr(model, "head", None)
        if isinstance(head, nn.Linear) and head.out_features < 2:
            raise UserError("amnesiac needs at least 2 classes to relabel the forget set to a wrong class")

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: AmnesiacHParams = self.hparams
        data = amnesiac_data(request.forget, request.require_retain(), request.num_classes, request.generator("labels"))
        optimizer = torch.optim.Adam(request.model.parameters(), lr=hp.lr)
        phases = [Phase(data, cross_entropy, hp.batch_size)]
        return run_fit(request.model, phases, hp.epochs, optimizer, request, "amnesiac")
