"""The 1-D CNN of the MNIST-1D paper (Greydanus 2020) for length-L sequences held as 1×1×L images."""

from __future__ import annotations

from torch import Tensor, nn

from unlearn.models.base import MODELS

CHANNELS = 25


class Sequence1d(nn.Module):
    """N×C×1×L images -> N×C×L sequences, so that 1-D layers follow."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2)


def _length(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


@MODELS.register("cnn1d")
def cnn1d(in_channels: int, image_size: tuple[int, int], num_classes: int) -> tuple[nn.Module, nn.Linear, str]:
    """Three 1-D conv layers of 25 channels (kernel 5 stride 2, then kernel 3 stride 2 twice, padding 1, ReLU),
    flattened, and a linear head: the paper's `ConvBase` (a 40-long input gives 25 × 5 = 125 features).

    Probes read the second conv layer's activations (flattened) as the earlier block.
    """
    height, length = image_size
    if height != 1:
        raise ValueError(f"cnn1d takes sequences stored as 1×L images, got height {height}")
    out = length
    for kernel in (5, 3, 3):
        out = _length(out, kernel, 2, 1)
    body = nn.Sequential(
        Sequence1d(),
        nn.Conv1d(in_channels, CHANNELS, 5, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(CHANNELS, CHANNELS, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(CHANNELS, CHANNELS, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
    )
    return body, nn.Linear(CHANNELS * out, num_classes), "4"
