"""Datasets: the embedded digits and MNIST-1D sets and torchvision datasets behind one interface."""

from __future__ import annotations

from pathlib import Path

from unlearn.data import digits as _digits  # noqa: F401  (registers "digits")
from unlearn.data import mnist1d as _mnist1d  # noqa: F401  (registers "mnist1d")
from unlearn.data import torchvision_sets as _torchvision_sets  # noqa: F401  (registers the rest)
from unlearn.data.base import DATASETS, Dataset
from unlearn.data.tensors import TensorData

__all__ = ["DATASETS", "Dataset", "TensorData", "load_dataset"]


def load_dataset(name: str, data_root: str | Path = "data/datasets", download: bool = False) -> Dataset:
    """Load a registered dataset by name."""
    return DATASETS.get(name)(Path(data_root), download)
