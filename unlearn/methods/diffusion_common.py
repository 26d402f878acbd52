"""What the diffusion-model methods share: Adam for a number of iterations in the one training loop, and a
second data stream drawn per step (a retain batch next to each forget batch)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.methods.base import PositiveFloat, PositiveInt, UnlearnRequest
from unlearn.train import Phase, StepHook, fit


@dataclass(frozen=True)
class DiffusionHParams:
    """Reference defaults of SalUn's diffusion code (DDPM, CIFAR-10): 1000 iterations, batch 128, Adam lr 1e-4,
    gradient norm clipped to 1."""

    iterations: PositiveInt = 1000
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 1e-4
    max_grad_norm: PositiveFloat | None = 1.0


def adam_fit(
    model: nn.Module,
    phase: Phase,
    hp: DiffusionHParams,
    request: UnlearnRequest,
    label: str,
    before_step: StepHook | None = None,
    params: Iterable[nn.Parameter] | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
) -> nn.Module:
    """Run the shared loop with Adam for `hp.iterations` steps over `phase` (its data cycled as often as needed).

    Before each step the gradient's global norm is clipped to `hp.max_grad_norm`, then `before_step` (for
    example a saliency mask) runs, as SalUn's diffusion code does (clip, mask, step). `params` defaults to all
    of the model's parameters.
    """
    params = list(params if params is not None else model.parameters())
    optimizer = torch.optim.Adam(params, lr=hp.lr, betas=betas)

    def hook(m: nn.Module, opt: torch.optim.Optimizer) -> None:
        if hp.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
        if before_step is not None:
            before_step(m, opt)

    steps_per_epoch = max(1, math.ceil(len(phase.data) / phase.batch_size))
    fit(
        model,
        [phase],
        epochs=math.ceil(hp.iterations / steps_per_epoch),
        optimizer=optimizer,
        generator=request.generator("batches"),
        before_step=hook,
        max_steps=hp.iterations,
        progress=label if request.progress else None,
    )
    return model


def next_remaining(c: int, forgotten: set[int] | tuple[int, ...], num_classes: int) -> int:
    """The first of (c + 1) mod C, (c + 2) mod C, ... that is not forgotten: the class a forgotten class is sent to
    (SalUn's c', SFD's override class). The caller ensures some class remains."""
    k = 1
    while (c + k) % num_classes in forgotten:
        k += 1
    return (c + k) % num_classes


class BatchDraws:
    """Random batches of `data` on demand (without replacement within a batch), from a seeded CPU generator:
    the second data stream of a step whose loss needs two (SalUn's α·(DDPM loss on D_r))."""

    def __init__(self, data: TensorData, batch_size: int, gen: torch.Generator):
        if len(data) == 0:
            raise ValueError("cannot draw batches from an empty dataset")
        self.data = data
        self.batch_size = min(batch_size, len(data))
        self.gen = gen

    def draw(self) -> tuple[Tensor, Tensor]:
        """The next batch (x, y) on the data's device."""
        idx = torch.randperm(len(self.data), generator=self.gen)[: self.batch_size].to(self.data.y.device)
        return self.data.x[idx], self.data.y[idx]
