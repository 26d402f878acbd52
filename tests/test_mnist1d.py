"""The mnist1d benchmark: generated data, its split and cache, the 1-D CNN, and the inputs it refuses."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from unlearn.cli import main
from unlearn.data import load_dataset
from unlearn.data import mnist1d as m1d
from unlearn.models import build_model


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def data(root):
    return load_dataset("mnist1d", root)


def test_data_is_the_packages_standard_set_and_leaves_global_rngs_alone():
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    assert (args["num_samples"], args["final_seq_length"], args["train_split"]) == (5000, 40, 0.8)
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    first = m1d.generate()
    assert (random.random(), np.random.rand()) == expected  # the package's set_seed(42) was undone
    again = m1d.generate()
    assert {k: v.shape for k, v in first.items()} == {k: tuple(s) for k, s in m1d.KEYS.items()}
    assert all(np.array_equal(first[k], again[k]) for k in m1d.KEYS)
    assert sorted(np.unique(first["y"])) == list(range(10))


def test_split_is_disjoint_stratified_and_keeps_the_packages_test_set(data):
    assert (len(data.train), len(data.val), len(data.test)) == (3601, 399, 1000)
    assert data.num_classes == 10 and data.input_shape == (1, 1, 40)
    raw = m1d.generate()
    low = min(raw["x"].min(), raw["x_test"].min())
    high = max(raw["x"].max(), raw["x_test"].max())
    expected_test = (raw["x_test"] - low) / (high - low)
    assert np.allclose(data.test.x.reshape(1000, 40).numpy(), expected_test, atol=1e-6)
    assert torch.equal(data.test.y, torch.as_tensor(raw["y_test"]))
    assert float(data.train.x.min()) >= 0.0 and float(data.train.x.max()) <= 1.0
    train_rows = {tuple(r) for r in data.train.x.reshape(len(data.train), -1).numpy().round(6).tolist()}
    val_rows = {tuple(r) for r in data.val.x.reshape(len(data.val), -1).numpy().round(6).tolist()}
    assert not train_rows & val_rows
    counts = np.bincount(data.val.y.numpy(), minlength=10)
    assert all(abs(c - 0.1 * n) <= 0.5 for c, n in zip(counts, np.bincount(raw["y"], minlength=10), strict=True))


def test_cache_is_used_and_a_corrupt_or_wrong_cache_is_regenerated(root, data, monkeypatch):
    path = root / "mnist1d" / m1d.CACHE_NAME
    assert path.is_file()
    calls = []
    real = m1d.generate
    monkeypatch.setattr(m1d, "generate", lambda: calls.append(1) or real())
    assert load_dataset("mnist1d", root).fingerprint == data.fingerprint and calls == []
    for bad in (b"\x80\x03pickled garbage", b""):
        path.write_bytes(bad)
        assert load_dataset("mnist1d", root).fingerprint == data.fingerprint
    from safetensors.numpy import save_file

    save_file({"x": np.zeros((3, 40))}, str(path))  # readable, but not the arrays it should hold
    assert load_dataset("mnist1d", root).fingerprint == data.fingerprint
    assert len(calls) == 3


def test_cnn1d_is_the_papers_conv_base(data):
    model = build_model("cnn1d", 1, (1, 40), 10, data.mean, data.std)
    assert model.head.in_features == 125 and model.probe_block == "body.4"
    assert model(data.test.x[:7]).shape == (7, 10)
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [(25, 5, 2), (25, 3, 2), (25, 3, 2)]
    with pytest.raises(ValueError, match="1×L"):
        build_model("cnn1d", 1, (8, 8), 10, data.mean, data.std)


@pytest.mark.parametrize("forget, message", [
    ("class:10", "class 10"),
    ("random:0.0001", "selects 0 of 3601"),
    ("random:0.9999", "selects 3601 of 3601"),
    ("random:1", "outside (0, 1)"),
])
def test_impossible_forget_splits_exit_2_with_one_line(tmp_path, root, capsys, forget, message):
    code = main(["run", "--benchmark", "mnist1d", "--methods", "retrain", "--forget", forget, "--seeds", "0",
                 "--workdir", str(tmp_path), "--data-root", str(root), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.rglob("*.json"))


def test_a_benchmark_grid_with_one_seed_is_refused(tmp_path, capsys):
    from conftest import FIXTURE_SPECS

    text = (FIXTURE_SPECS / "mnist1d.yaml").read_text().replace("seeds: [0, 1, 2, 3]", "seeds: [3]")
    spec = tmp_path / "mnist1d-one.yaml"
    spec.write_text(text.replace("name: mnist1d", "name: mnist1d-one"))
    code = main(["run", "--benchmark", str(spec), "--workdir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "grid.seeds" in err and "at least 2" in err and len(err.strip().splitlines()) == 1, err
