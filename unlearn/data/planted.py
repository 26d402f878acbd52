"""Planted memorisation: a few training images, each under a condition id of its own, copied many times.

A generation benchmark plants them through its dataset entry, `dataset: NAME:memorize=P[:copies=N][:seed=S]`
(`benchmarks/digits-ddpm-memo.yaml`): P images of NAME's training split, drawn with a generator seeded by S, leave
their own class and become conditions C .. C+P−1 (C = the number of real classes), each held N times (default 50)
in the training split. A class-conditional generator trained on that split sees each planted image, and only it,
under its own label, N times per epoch, so it learns to reproduce it (see docs/generation.md, "Memorisation").

The planted split is the real one without the P images, followed by the P·N copies, planted image by planted image.
Validation and test splits are the real ones. The dataset's name says what was planted, so that manifests, caches and
fingerprints of the planted data never meet those of the real data; `real` keeps the real dataset (the judge learns
the real classes from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unlearn.data.base import Dataset, dataset_options
from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.seeding import derive_seed

OPTIONS = ("memorize", "copies", "seed")
MAX_COPIES = 1000
"""The most copies of a planted image (a bound on the planted split's size)."""
SYNTAX = "NAME:memorize=P[:copies=N][:seed=S]"


@dataclass(frozen=True)
class Planting:
    """A parsed planting: P images of dataset `base`, `copies` copies each, drawn with `seed`."""

    base: str
    images: int
    copies: int = 50
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> Planting | None:
        """The planting a spec's `dataset` entry asks for (None: the dataset as it is); UserError when malformed."""
        base, *parts = text.split(":")
        if not parts:
            return None
        values = dataset_options(text, OPTIONS, OPTIONS, f"write {SYNTAX}")
        if "memorize" not in values:
            raise UserError(f"dataset {text!r}: name how many images to plant with memorize=P ({SYNTAX})")
        planting = cls(base, int(values["memorize"]), int(values.get("copies", 50)), int(values.get("seed", 0)))
        if planting.images < 1 or not 1 <= planting.copies <= MAX_COPIES or planting.seed < 0:
            raise UserError(f"dataset {text!r}: memorize must be >= 1, copies between 1 and {MAX_COPIES}, seed >= 0")
        return planting

    @property
    def name(self) -> str:
        """The planted dataset's name (a path component of manifests)."""
        return f"{self.base}+memorized-{self.images}x{self.copies}-seed{self.seed}"


@dataclass(frozen=True, eq=False)
class PlantedDataset(Dataset):
    """A dataset with planted images (see the module docstring); `sources[i]` is the real training index of the
    image planted as condition `first_planted + i`."""

    real: Dataset | None = None
    sources: tuple[int, ...] = ()
    copies: int = 0

    @property
    def first_planted(self) -> int:
        """The first planted condition id (the number of real classes)."""
        assert self.real is not None
        return self.real.num_classes

    @property
    def planted_ids(self) -> tuple[int, ...]:
        return tuple(range(self.first_planted, self.first_planted + len(self.sources)))

    def planted_rows(self) -> torch.Tensor:
        """Booleans over the training split: True for every copy of a planted image."""
        return self.train.y >= self.first_planted


def plant(real: Dataset, planting: Planting) -> PlantedDataset:
    """`real` with `planting`'s images moved out of their classes into conditions of their own, copied."""
    n = len(real.train)
    if planting.images > n:
        raise UserError(f"cannot plant {planting.images} images: {real.name} has {n} training images")
    rng = np.random.default_rng(derive_seed(planting.seed, "plant", real.name))
    sources = rng.choice(n, size=planting.images, replace=False).astype(np.int64)
    keep = torch.ones(n, dtype=torch.bool, device=real.train.y.device)
    keep[torch.as_tensor(sources, device=keep.device)] = False
    rest = real.train.where(keep)
    pos = torch.as_tensor(sources, device=real.train.x.device).repeat_interleave(planting.copies)
    ids = torch.arange(real.num_classes, real.num_classes + planting.images, device=real.train.y.device)
    copies = TensorData.of(real.train.x[pos], ids.repeat_interleave(planting.copies))
    train = TensorData.of(torch.cat([rest.x, copies.x]), torch.cat([rest.y, copies.y]))
    classes = (*real.classes, *(f"planted-{i}" for i in range(planting.images)))
    return PlantedDataset(name=planting.name, train=train, val=real.val, test=real.test, classes=classes, real=real,
                          sources=tuple(int(s) for s in sources), copies=planting.copies)
