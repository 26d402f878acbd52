"""Gradients over a dataset without touching `.grad`: the raw material of saliency masks,
SSD importances and influence estimates.

The caller chooses the model's mode (the references compute these in eval mode).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.train import LossFn

Gradients = dict[str, Tensor]
"""Parameter name -> gradient (same shape as the parameter)."""


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that require gradients, by name, in registration order."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def batch_gradients(model: nn.Module, data: TensorData, loss: LossFn, batch_size: int) -> Iterator[tuple[int, Gradients]]:
    """For each mini-batch of `data` in order (no shuffling): (batch length, gradient of its loss).

    Parameters the loss does not reach get a zero gradient.
    """
    params = trainable(model)
    for x, y in data.batches(batch_size):
        grads = torch.autograd.grad(loss(model, x, y), list(params.values()), allow_unused=True)
        yield len(y), {
            name: (g.detach() if g is not None else torch.zeros_like(p)) for (name, p), g in zip(params.items(), grads, strict=True)
        }


def summed_gradients(model: nn.Module, data: TensorData, loss: LossFn, batch_size: int) -> Gradients:
    """The sum over mini-batches of each batch's gradient (SalUn's saliency accumulation)."""
    total = {name: torch.zeros_like(p) for name, p in trainable(model).items()}
    for _, grads in batch_gradients(model, data, loss, batch_size):
        for name, g in grads.items():
            total[name] += g
    return total


def mean_squared_gradients(model: nn.Module, data: TensorData, loss: LossFn, batch_size: int) -> Gradients:
    """The mean over mini-batches of each batch gradient squared elementwise (SSD's importance)."""
    total = {name: torch.zeros_like(p) for name, p in trainable(model).items()}
    batches = 0
    for _, grads in batch_gradients(model, data, loss, batch_size):
        batches += 1
        for name, g in grads.items():
            total[name] += g * g
    return {name: t / max(batches, 1) for name, t in total.items()}
