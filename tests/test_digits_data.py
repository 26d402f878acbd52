"""The embedded digits dataset and the documented split rule."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from sklearn.datasets import load_digits

from unlearn.data import load_dataset
from unlearn.data.base import stratified_hash_split
from unlearn.data.digits import SPLIT_SALT


def test_split_rule_matches_its_documentation():
    labels = np.array([0] * 10 + [1] * 10)
    parts = stratified_hash_split(labels, {"test": 0.2, "val": 0.1}, "salt")
    for cls in (0, 1):
        members = np.flatnonzero(labels == cls).tolist()
        ranked = sorted(members, key=lambda i: hashlib.sha256(f"salt:{i}".encode()).digest())
        assert set(ranked[:2]) <= set(parts["test"].tolist())
        assert set(ranked[2:3]) <= set(parts["val"].tolist())
        assert set(ranked[3:]) <= set(parts["rest"].tolist())


def test_digits_split_is_fixed_disjoint_complete_and_stratified():
    labels = load_digits().target
    parts = stratified_hash_split(labels, {"test": 0.2, "val": 0.1}, SPLIT_SALT)
    test, val, train = parts["test"], parts["val"], parts["rest"]
    assert (len(train), len(val), len(test)) == (1259, 179, 359)
    assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))
    assert sorted([*train, *val, *test]) == list(range(len(labels)))
    for cls in range(10):
        n = int((labels == cls).sum())
        assert int((labels[test] == cls).sum()) == round(0.2 * n)
        assert int((labels[val] == cls).sum()) == round(0.1 * n)


def test_digits_dataset_is_deterministic_and_scaled():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.fingerprint == b.fingerprint
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).x, getattr(b, part).x)
        assert torch.equal(getattr(a, part).y, getattr(b, part).y)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert float(a.train.x.min()) == 0.0 and float(a.train.x.max()) == 1.0
    raw = load_digits()
    labels = raw.target
    train_idx = stratified_hash_split(labels, {"test": 0.2, "val": 0.1}, SPLIT_SALT)["rest"]
    assert torch.allclose(a.train.x[5, 0], torch.tensor(raw.images[train_idx[5]] / 16.0, dtype=torch.float32))
    assert torch.equal(a.train.index, torch.arange(len(a.train)))
