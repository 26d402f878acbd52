"""MNIST-1D (Greydanus, "Scaling down deep learning", 2020): procedurally generated 1-D digits, no download.

The `mnist1d` package generates the standard set from a seed: 5,000 sequences of length 40,
10 classes, the first 4,000 for training and the last 1,000 for testing. Only its generator
is used here. The package's `get_dataset` downloads a pickle by default; we never call it
and never unpickle anything. The generated arrays are cached as safetensors under
`<data_root>/mnist1d/`, because generating them takes seconds on a busy machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from unlearn.atomic import atomic_write
from unlearn.data.base import DATASETS, Dataset, stratified_hash_split
from unlearn.data.tensors import TensorData

SPLIT_SALT = "unlearn-mnist1d-v1"
VAL_FRACTION = 0.1
"""Validation is carved out of the package's 4,000 training sequences; its 1,000 test sequences stay the test set."""
CACHE_NAME = "mnist1d-default-seed42.safetensors"
KEYS = {"x": (4000, 40), "y": (4000,), "x_test": (1000, 40), "y_test": (1000,)}
"""The arrays `make_dataset` returns for the package's default arguments, and their shapes."""


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """The package seeds Python's and NumPy's global generators; give them back as they were."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def generate() -> dict[str, np.ndarray]:
    """The standard MNIST-1D arrays from the package's generator with its published default arguments."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # a declared dependency; only a broken install lacks it
        raise ImportError("the mnist1d benchmark needs the `mnist1d` package: pip install mnist1d") from exc
    with _global_rng_kept():
        data = make_dataset(get_dataset_args())
    return {k: np.ascontiguousarray(data[k], dtype=np.float64 if k.startswith("x") else np.int64) for k in KEYS}


def _valid(arrays: dict[str, np.ndarray]) -> bool:
    return set(arrays) == set(KEYS) and all(
        tuple(arrays[k].shape) == shape and np.isfinite(arrays[k]).all() for k, shape in KEYS.items()
    ) and all(np.isin(arrays[k], np.arange(10)).all() for k in ("y", "y_test"))


def cached_arrays(data_root: Path) -> dict[str, np.ndarray]:
    """The generated arrays, read from the cache or generated and cached (atomically).

    A cache file that cannot be read or holds the wrong arrays is regenerated, never trusted.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file, save_file

    path = Path(data_root) / "mnist1d" / CACHE_NAME
    try:
        arrays = load_file(str(path))
        if _valid(arrays):
            return arrays
    except (OSError, SafetensorError, ValueError):
        pass
    arrays = generate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(arrays, str(tmp)), "MNIST-1D cache")
    except Exception:  # an unwritable data root costs the next run a few seconds, nothing more
        pass
    return arrays


def _to_images(x: np.ndarray, low: float, high: float) -> torch.Tensor:
    """Sequences as N×1×1×40 float32 'images' in [0, 1] (an affine map; the model standardises inside)."""
    scaled = (x - low) / (high - low)
    return torch.as_tensor(scaled, dtype=torch.float32).reshape(len(x), 1, 1, x.shape[1]).contiguous()


@DATASETS.register("mnist1d")
def load(data_root: Path, download: bool) -> Dataset:
    """MNIST-1D: 10 classes of length-40 sequences; split 3,601 train / 399 val / 1,000 test.

    The package's own split is kept: its 1,000 test sequences are the test set. Validation
    takes 10 % of each class of the package's 4,000 training sequences, ordered by
    sha256("unlearn-mnist1d-v1:<index>") as digits' rule does; the rest is training.
    Values are mapped affinely to [0, 1] with the minimum and maximum over all 5,000
    sequences, so that input-space attacks (boundary shrink's FGSM) work as on images.
    `download` is unused: the data is generated locally from the package's fixed seed.
    """
    arrays = cached_arrays(data_root)
    x_all = np.concatenate([arrays["x"], arrays["x_test"]])
    low, high = float(x_all.min()), float(x_all.max())
    parts = stratified_hash_split(arrays["y"], {"val": VAL_FRACTION}, SPLIT_SALT)
    x, y = _to_images(arrays["x"], low, high), torch.as_tensor(arrays["y"])

    return Dataset(
        name="mnist1d",
        train=TensorData.taken(x, y, parts["rest"]),
        val=TensorData.taken(x, y, parts["val"]),
        test=TensorData.of(_to_images(arrays["x_test"], low, high), torch.as_tensor(arrays["y_test"])),
        classes=tuple(str(c) for c in range(10)),
    )
