"""A multilayer perceptron for small images: flatten -> 256 -> 256 -> classes."""

from __future__ import annotations

from torch import nn

from unlearn.models.base import MODELS


@MODELS.register("mlp")
def mlp(in_channels: int, image_size: tuple[int, int], num_classes: int) -> tuple[nn.Module, nn.Linear, str]:
    """Two 256-unit ReLU hidden layers over the flattened image, linear head (64->256->256->10 on digits).

    Probes read the first hidden layer as the earlier block.
    """
    h, w = image_size
    body = nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * h * w, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
    )
    return body, nn.Linear(256, num_classes), "2"
