"""The classifier shape every model shares: normalisation inside, a feature body, a linear head."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

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

    def __init__(
        self, body: nn.Module, head: nn.Linear, mean: Sequence[float], std: Sequence[float], probe_block: str | None = None
    ):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.head = head
        self.probe_block = f"body.{probe_block}" if probe_block else None
        """The earlier block whose output probes read besides the penultimate features (a submodule path)."""
        self.input_shape: tuple[int, int, int] | None = None
        """(channels, height, width) of the images it takes, when known (`build_model` sets it; not saved)."""

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features of images `x` in [0, 1]."""
        return self.body(self.normalize(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


ModelFactory = Callable[[int, tuple[int, int], int], "tuple[nn.Module, nn.Linear] | tuple[nn.Module, nn.Linear, str]"]
"""(in_channels, (height, width), num_classes) -> (body, head) or (body, head, probe_block), where
probe_block names the submodule of body whose output is an earlier block's features for probes."""

MODELS: Registry[ModelFactory] = Registry("model")


def build_model(
    name: str, in_channels: int, image_size: tuple[int, int], num_classes: int, mean: Sequence[float], std: Sequence[float]
) -> Classifier:
    """Build the registered model `name` for images of the given shape (weights from the global RNG)."""
    body, head, *block = MODELS.get(name)(in_channels, image_size, num_classes)
    model = Classifier(body, head, mean, std, block[0] if block else None)
    model.input_shape = (in_channels, *image_size)
    return model


@dataclass(frozen=True)
class Blueprint:
    """Everything needed to build a benchmark's model, picklable so that worker processes can build it too."""

    model: str
    in_channels: int
    image_size: tuple[int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def build(self, seed: int, *tags: str, device: torch.device | str = "cpu") -> Classifier:
        """A fresh model initialised from (seed, "init", *tags); the global RNG is left untouched."""
        return seeded_build(
            lambda: build_model(self.model, self.in_channels, self.image_size, self.num_classes, self.mean, self.std),
            seed, tags, device,
        )


M = TypeVar("M", bound=nn.Module)


def seeded_build(make: Callable[[], M], seed: int, tags: Sequence[str], device: torch.device | str) -> M:
    """`make()` with the global RNG seeded from (seed, "init", *tags) and restored afterwards, moved to `device`."""
    from unlearn.seeding import derive_seed

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init", *tags))
        model = make()
    return model.to(device)
