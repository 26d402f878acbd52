"""A small CNN for 8×8 (and other small) images: conv 16 -> conv 32 -> pool -> 64 -> classes."""

from __future__ import annotations

from torch import nn

from unlearn.models.base import MODELS


@MODELS.register("small-cnn")
def small_cnn(in_channels: int, image_size: tuple[int, int], num_classes: int) -> tuple[nn.Module, nn.Linear, str]:
    """Two 3×3 conv layers (16, 32 channels), 2×2 max-pool, a 64-unit hidden layer, linear head.

    Probes read the pooled convolutional features (the flattened max-pool output) as the earlier block.
    """
    h, w = image_size
    body = nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (h // 2) * (w // 2), 64),
        nn.ReLU(),
    )
    return body, nn.Linear(64, num_classes), "5"
