"""scikit-learn's bundled 8×8 digits: real data, no download, the default benchmark's dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unlearn.data.base import DATASETS, Dataset, images_to_tensor, stratified_hash_split
from unlearn.data.tensors import TensorData

SPLIT_SALT = "unlearn-digits-v1"
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1


@DATASETS.register("digits")
def load(data_root: Path, download: bool) -> Dataset:
    """scikit-learn digits: 1797 grey 8×8 images of 10 classes; split 1259 train / 179 val / 359 test.

    The split is fixed and documented: within each class, samples are ordered by
    sha256("unlearn-digits-v1:<index>") over their index in `load_digits()`; the first
    20 % (rounded) are test, the next 10 % validation, the rest training. Pixel values
    0..16 are scaled to [0, 1]. `data_root` and `download` are unused (the data ships
    with scikit-learn).
    """
    from sklearn.datasets import load_digits  # here, not at import: listing commands need no scikit-learn

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    parts = stratified_hash_split(labels, {"test": TEST_FRACTION, "val": VAL_FRACTION}, SPLIT_SALT)
    x = images_to_tensor(images, 16.0, "NHW")
    y = torch.as_tensor(labels)

    return Dataset(
        name="digits",
        train=TensorData.taken(x, y, parts["rest"]),
        val=TensorData.taken(x, y, parts["val"]),
        test=TensorData.taken(x, y, parts["test"]),
        classes=tuple(str(c) for c in range(10)),
    )
