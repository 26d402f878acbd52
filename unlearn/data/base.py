"""The dataset interface every benchmark uses, its registry and the documented split rule."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.hashing import hash_order
from unlearn.registry import Registry, did_you_mean


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits of one image-classification dataset, held as tensors.

    Forget manifests index into `train`. `val` is held out of training and is the only
    split tuning may look at; `test` is for reporting only.
    """

    name: str
    train: TensorData
    val: TensorData
    test: TensorData
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        c, h, w = self.train.x.shape[1:]
        return int(c), int(h), int(w)

    @cached_property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the training images (the model normalises inputs with it)."""
        return tuple(float(v) for v in self.train.x.mean(dim=(0, 2, 3)))

    @cached_property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the training images."""
        return tuple(float(v) for v in self.train.x.std(dim=(0, 2, 3)))

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over every split's images and labels: changes whenever the data does."""
        h = hashlib.sha256(self.name.encode())
        for part in (self.train, self.val, self.test):
            h.update(part.x.detach().cpu().contiguous().numpy().tobytes())
            h.update(part.y.detach().cpu().numpy().astype(np.int64).tobytes())
        return h.hexdigest()


Loader = Callable[[Path, bool], Dataset]
"""A dataset loader: (data_root, download) -> Dataset."""

DATASETS: Registry[Loader] = Registry("dataset")


def stratified_hash_split(labels: np.ndarray, fractions: Mapping[str, float], salt: str) -> dict[str, np.ndarray]:
    """Split sample indices class by class into named parts plus a `rest` part.

    Within each class, samples are ordered by sha256(salt:index) and the parts take
    round(fraction × class size) samples in the order given (Python's round: halves go to
    the even number); `rest` takes what is left.
    The rule uses no random number generator, so it gives the same split on every
    machine and library version. Every part is returned sorted.
    """
    parts: dict[str, list[int]] = {name: [] for name in [*fractions, "rest"]}
    for cls in np.unique(labels):
        members = hash_order(np.flatnonzero(labels == cls), salt).tolist()
        start = 0
        for name, fraction in fractions.items():
            take = int(round(fraction * len(members)))
            parts[name].extend(members[start : start + take])
            start += take
        parts["rest"].extend(members[start:])
    return {name: np.array(sorted(idx), dtype=np.int64) for name, idx in parts.items()}


def images_to_tensor(images: np.ndarray | torch.Tensor, scale: float, layout: str) -> torch.Tensor:
    """Convert raw images to float N×C×H×W in [0, 1]; `layout` is 'NHW', 'NHWC' or 'NCHW'."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32) / scale
    if layout == "NHW":
        x = x.unsqueeze(1)
    elif layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    elif layout != "NCHW":
        raise ValueError(f"unknown layout {layout!r}")
    return x.contiguous()


def dataset_options(text: str, allowed: Sequence[str], whole_numbers: Sequence[str], help: str) -> dict[str, str | int]:
    """The `key=value` options after a spec's dataset name (`NAME:key=value:...`), each key one of `allowed`, the
    `whole_numbers` among them parsed as int; UserError (ending with `help`) on an unknown key or a bad number."""
    values: dict[str, str | int] = {}
    for part in text.split(":")[1:]:
        key, sep, value = part.partition("=")
        if not sep or key not in allowed:
            raise UserError(f"dataset {text!r}: unknown option {part!r}{did_you_mean(key, list(allowed))}; {help}")
        if key in whole_numbers:
            try:
                values[key] = int(value)
            except ValueError:
                raise UserError(f"dataset {text!r}: {key} must be a whole number, not {value!r}") from None
        else:
            values[key] = value
    return values
