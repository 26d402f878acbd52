"""torchvision's ResNet-18 with the CIFAR stem (3×3 stride-1 first conv, no max-pool)."""

from __future__ import annotations

from torch import nn

from unlearn.models.base import MODELS


@MODELS.register("resnet18")
def resnet18(in_channels: int, image_size: tuple[int, int], num_classes: int) -> tuple[nn.Module, nn.Linear, str]:
    """torchvision ResNet-18 with the CIFAR stem, as in the SalUn/Sparse-unlearning code bases.

    Probes read layer3's output (averaged over space) as the earlier block.
    """
    import torchvision

    net = torchvision.models.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    head = nn.Linear(net.fc.in_features, num_classes)
    net.fc = nn.Identity()
    return net, head, "layer3"
