"""The classifier shape every model shares: normalisation inside, a feature body, a linear head."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from unlearn.registry import Registry


class Normalize(nn.Module):
    """Per-channel standardisation, inside the model so that inputs stay in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """normalize -> body (penultimate features) -> head (logits).

    Keeping the head a separate `nn.Linear` lets probes read `features(x)` and lets
    methods that touch only the last layers find them without knowing the architecture.
    """

    def __init__(self, body: nn.Module, head: nn.Linear, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.head = head

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features of images `x` in [0, 1]."""
        return self.body(self.normalize(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


ModelFactory = Callable[[int, tuple[int, int], int], tuple[nn.Module, nn.Linear]]
"""(in_channels, (height, width), num_classes) -> (body, head)."""

MODELS: Registry[ModelFactory] = Registry("model")


def build_model(
    name: str, in_channels: int, image_size: tuple[int, int], num_classes: int, mean: Sequence[float], std: Sequence[float]
) -> Classifier:
    """Build the registered model `name` for images of the given shape (weights from the global RNG)."""
    body, head = MODELS.get(name)(in_channels, image_size, num_classes)
    return Classifier(body, head, mean, std)
