"""Tiny fake datasets in torchvision's real on-disk formats, so loaders run without any download.

Every writer returns a `FakeSplits` holding exactly what it wrote, in the layout the
unlearn loader must produce (N×C×H×W uint8 images, int64 labels), so tests can compare
loaded tensors to the written bytes. Images are random (hence pairwise distinct) with
a distinctive, position-dependent value at one known pixel to pin down the layout.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_COUNTS = (16, 6, 6, 6, 3, 3, 3, 3, 2, 2)
"""Training images per class for the 10-class fakes (50 in all)."""

EXPECTED_VAL_COUNTS = (2, 1, 1, 1, 0, 0, 0, 0, 0, 0)
"""round(0.1 × class size) for TRAIN_COUNTS, written out by hand."""

CIFAR100_CLASS_IDS = (0, 7, 13, 42, 55, 61, 77, 88, 98, 99)
"""The CIFAR-100 fine labels the fake uses, in the order of TRAIN_COUNTS."""

TEST_SIZE = 10
"""Test images: one per class of the 10-class fakes (one per used class for CIFAR-100)."""

MARK = (1, 2, 3)
"""(channel, row, column) of the pixel each writer sets to a value derived from the image index."""


@dataclass(frozen=True)
class FakeSplits:
    """What a writer put on disk: images as N×C×H×W uint8 and labels as the loader must report them."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def md5(path: Path) -> str:
    """Return the md5 hex digest of a file (what torchvision checks CIFAR and SVHN files against)."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def mark_value(i: int) -> int:
    """The value written at MARK in image `i`: distinctive and different for neighbouring images."""
    return (37 * i + 11) % 256


def _labels(class_ids: tuple[int, ...], counts: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Return shuffled int64 labels with counts[k] copies of class_ids[k]."""
    labels = np.repeat(np.asarray(class_ids, dtype=np.int64), counts)
    return rng.permutation(labels)


def _images(n: int, channels: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Return n random N×C×H×W uint8 images with mark_value(i) at MARK (channel 0 when grey)."""
    x = rng.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)
    c, h, w = MARK
    for i in range(n):
        x[i, min(c, channels - 1), h, w] = mark_value(i)
    return x


def _splits(channels: int, size: int, class_ids: tuple[int, ...], seed: int) -> FakeSplits:
    """Return random train (TRAIN_COUNTS per class) and test (one per class) images and labels."""
    rng = np.random.default_rng(seed)
    train_y = _labels(class_ids, TRAIN_COUNTS, rng)
    test_y = rng.permutation(np.asarray(class_ids, dtype=np.int64))  # every class once
    return FakeSplits(
        _images(len(train_y), channels, size, rng), train_y, _images(TEST_SIZE, channels, size, rng), test_y
    )


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format (magic 2049 for 1-d labels, 2051 for 3-d images)."""
    magic = {1: 2049, 3: 2051}[array.ndim]
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", seed: int = 0) -> FakeSplits:
    """Write a fake MNIST (or FashionMNIST with folder="FashionMNIST") under root/<folder>/raw."""
    fake = _splits(1, 28, tuple(range(10)), seed)
    raw = Path(root) / folder / "raw"
    for prefix, x, y in (("train", fake.train_x, fake.train_y), ("t10k", fake.test_x, fake.test_y)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x[:, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8))
    return fake


def _pickle(path: Path, obj: object) -> None:
    """Pickle `obj` to `path`, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def _cifar_rows(x: np.ndarray) -> np.ndarray:
    """Flatten N×3×32×32 images to CIFAR's N×3072 rows (row-major C, H, W)."""
    return np.ascontiguousarray(x.reshape(len(x), 3 * 32 * 32))


CIFAR10_NAMES = tuple(f"fake-{k}" for k in range(10))
CIFAR100_NAMES = tuple(f"fine-{k}" for k in range(100))


def write_cifar10(root: Path, seed: int = 1) -> FakeSplits:
    """Write a fake CIFAR-10 (five train batches, test batch, batches.meta) under root/cifar-10-batches-py."""
    fake = _splits(3, 32, tuple(range(10)), seed)
    base = Path(root) / "cifar-10-batches-py"
    for b, (xs, ys) in enumerate(zip(np.array_split(fake.train_x, 5), np.array_split(fake.train_y, 5), strict=True), start=1):
        _pickle(base / f"data_batch_{b}", {"data": _cifar_rows(xs), "labels": [int(v) for v in ys]})
    _pickle(base / "test_batch", {"data": _cifar_rows(fake.test_x), "labels": [int(v) for v in fake.test_y]})
    _pickle(base / "batches.meta", {"label_names": list(CIFAR10_NAMES)})
    return fake


def write_cifar100(root: Path, seed: int = 2) -> FakeSplits:
    """Write a fake CIFAR-100 (train, test, meta with 100 fine names) under root/cifar-100-python."""
    fake = _splits(3, 32, CIFAR100_CLASS_IDS, seed)
    base = Path(root) / "cifar-100-python"
    for part, x, y in (("train", fake.train_x, fake.train_y), ("test", fake.test_x, fake.test_y)):
        coarse = [int(v) // 5 for v in y]
        _pickle(base / part, {"data": _cifar_rows(x), "fine_labels": [int(v) for v in y], "coarse_labels": coarse})
    _pickle(base / "meta", {"fine_label_names": list(CIFAR100_NAMES), "coarse_label_names": [str(k) for k in range(20)]})
    return fake


def cifar_md5s(root: Path, cls: type) -> dict[str, object]:
    """Return `train_list`, `test_list` and `meta` for torchvision class `cls` with the md5s of the files on disk."""
    base = Path(root) / cls.base_folder
    return {
        "train_list": [[name, md5(base / name)] for name, _ in cls.train_list],
        "test_list": [[name, md5(base / name)] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": md5(base / cls.meta["filename"])},
    }


def write_svhn(root: Path, seed: int = 3) -> FakeSplits:
    """Write fake SVHN train_32x32.mat / test_32x32.mat (X: H×W×C×N, y: N×1 with 10 for digit 0)."""
    from scipy.io import savemat

    fake = _splits(3, 32, tuple(range(10)), seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    for part, x, y in (("train", fake.train_x, fake.train_y), ("test", fake.test_x, fake.test_y)):
        raw_y = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)
        savemat(str(Path(root) / f"{part}_32x32.mat"), {"X": np.ascontiguousarray(x.transpose(2, 3, 1, 0)), "y": raw_y})
    return fake


def svhn_md5s(root: Path, split_list: dict[str, list[str]]) -> dict[str, list[str]]:
    """Return a copy of SVHN's `split_list` with the md5s of the train and test files on disk."""
    out = {k: list(v) for k, v in split_list.items()}
    for part in ("train", "test"):
        out[part][2] = md5(Path(root) / out[part][1])
    return out
