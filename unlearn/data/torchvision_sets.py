"""MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN through torchvision, behind the same interface.

Files are read from `--data-root` in torchvision's own on-disk layout. Nothing is
downloaded unless the user passes the explicit download flag. CIFAR and SVHN files
are verified by torchvision against their published md5 sums before they are read.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import torch

from unlearn.data.base import DATASETS, Dataset, images_to_tensor, stratified_hash_split
from unlearn.data.tensors import TensorData
from unlearn.errors import UserError

VAL_FRACTION = 0.1
"""Share of the official training set held out (stratified) as validation: 45k/5k on CIFAR-10."""


@dataclass(frozen=True)
class _Source:
    """How to read one torchvision dataset's official train and test parts, and what a user must put where."""

    factory: str  # torchvision.datasets attribute
    split_kwargs: tuple[dict[str, Any], dict[str, Any]]  # (train, test) keyword arguments
    labels_attr: str
    layout: str  # of the `.data` array
    files: str  # what torchvision reads, relative to the data root
    download_mb: int  # the size of the official download, in MB (10^6 bytes)
    classes: tuple[str, ...] | None = None  # when torchvision does not name them


_SOURCES: dict[str, _Source] = {
    "mnist": _Source("MNIST", ({"train": True}, {"train": False}), "targets", "NHW",
                     "MNIST/raw/ (the four *-idx?-ubyte files)", 12),
    "fashion-mnist": _Source("FashionMNIST", ({"train": True}, {"train": False}), "targets", "NHW",
                             "FashionMNIST/raw/ (the four *-idx?-ubyte files)", 31),
    "cifar10": _Source("CIFAR10", ({"train": True}, {"train": False}), "targets", "NHWC",
                       "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)", 170),
    "cifar100": _Source("CIFAR100", ({"train": True}, {"train": False}), "targets", "NHWC",
                        "cifar-100-python/ (train, test, meta)", 169),
    "svhn": _Source(
        "SVHN", ({"split": "train"}, {"split": "test"}), "labels", "NCHW", "train_32x32.mat and test_32x32.mat",
        246, tuple(str(d) for d in range(10)),
    ),
}

_OFFLINE_TEXT = ("urlopen error", "name or service not known", "temporary failure in name resolution",
                 "network is unreachable", "connection refused", "no route to host")
"""What a network failure says when torchvision re-raises it as text only (MNIST joins its mirrors' errors into
one RuntimeError, dropping the exceptions)."""


def network_failure(exc: BaseException) -> str | None:
    """The line saying that the network could not be reached, from `exc` or an exception it was raised from;
    None when it is some other failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (URLError, socket.gaierror, socket.timeout, ConnectionError)):
            return _reason(current)
        for line in str(current).splitlines():
            if any(text in line.lower() for text in _OFFLINE_TEXT):
                return line.strip()
        current = current.__cause__ or current.__context__
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read(name: str, source: _Source, root: Path, download: bool, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, source.factory)
    where = f"{root} should hold {source.files}"
    try:
        ds = cls(str(root), download=download, **kwargs)
    except Exception as exc:  # torchvision reports missing or damaged files with assorted exception types
        offline = network_failure(exc) if download else None
        if offline is not None:
            raise UserError(
                f"dataset {name!r}: the network is unreachable ({offline}), so it cannot be downloaded; fetch "
                f"it (about {source.download_mb} MB) on a machine with internet access (e.g. with --download there), "
                f"copy it into a folder that then holds {source.files}, and pass that folder as --data-root "
                f"(this run looked in {root})"
            ) from None
        hint = (f"check the files ({where})" if download else
                f"{where} (about {source.download_mb} MB to download): pass --download to fetch it, "
                "or --data-root to point at a copy")
        if isinstance(exc, OSError):  # unreadable files, a full disk during a download
            raise UserError(f"dataset {name!r}: reading or downloading into {root} failed: {_reason(exc)}; "
                            f"{hint}") from None
        raise UserError(f"dataset {name!r} not found or corrupted under {root} ({_reason(exc)}); {hint}") from None
    labels = np.asarray(getattr(ds, source.labels_attr), dtype=np.int64)
    if len(ds.data) != len(labels):
        raise UserError(f"dataset {name!r} under {root} is corrupted: {len(ds.data)} images but {len(labels)} labels")
    return ds, labels


def load_torchvision(name: str, data_root: Path, download: bool) -> Dataset:
    """Load the torchvision dataset `name` as train/val/test tensors in [0, 1].

    Validation is a stratified 10 % of the official training set chosen by the same
    sha256 rule as every other split (salt "unlearn-<name>-v1"); the official test set
    is the test split.
    """
    source = _SOURCES[name]
    train_ds, train_y = _read(name, source, data_root, download, source.split_kwargs[0])
    test_ds, test_y = _read(name, source, data_root, download, source.split_kwargs[1])
    scale = 255.0
    train_x = images_to_tensor(train_ds.data, scale, source.layout)
    test_x = images_to_tensor(test_ds.data, scale, source.layout)
    parts = stratified_hash_split(train_y, {"val": VAL_FRACTION}, f"unlearn-{name}-v1")
    classes = source.classes or tuple(str(c) for c in train_ds.classes)

    def split(x: torch.Tensor, y: np.ndarray, idx: np.ndarray | None = None) -> TensorData:
        if idx is None:
            return TensorData.of(x, torch.as_tensor(y))
        pos = torch.as_tensor(idx)
        return TensorData.of(x[pos], torch.as_tensor(y)[pos])

    return Dataset(
        name=name,
        train=split(train_x, train_y, parts["rest"]),
        val=split(train_x, train_y, parts["val"]),
        test=split(test_x, test_y),
        classes=classes,
    )


def _loader(name: str) -> Callable[[Path, bool], Dataset]:
    def load(data_root: Path, download: bool) -> Dataset:
        return load_torchvision(name, data_root, download)

    load.__doc__ = f"torchvision {_SOURCES[name].factory} from --data-root (official test split; 10 % of train as val)."
    return load


for _name in _SOURCES:
    DATASETS.register(_name)(_loader(_name))
