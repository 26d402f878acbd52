"""torchvision datasets (MNIST, Fashion-MNIST, CIFAR-10/100, SVHN) loaded from tiny fakes on disk.

Nothing here touches the network: each test writes a small dataset in torchvision's
real file format under tmp_path and, for CIFAR and SVHN, points torchvision's md5
table at the files it wrote (torchvision's class attributes, never our code).
"""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import fake_torchvision as fake
import numpy as np
import pytest
import torch
import torchvision.datasets

from unlearn.cli import main
from unlearn.data import load_dataset
from unlearn.errors import UserError

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10", "cifar100", "svhn")


def _patch_cifar(monkeypatch: pytest.MonkeyPatch, root: Path, cls: type) -> None:
    """Point torchvision's md5 table for CIFAR class `cls` at the files under `root`."""
    for attr, value in fake.cifar_md5s(root, cls).items():
        monkeypatch.setattr(cls, attr, value)


def install(name: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> fake.FakeSplits:
    """Write fake dataset `name` under `root` and make torchvision accept its md5s."""
    if name == "mnist":
        return fake.write_mnist(root)
    if name == "fashion-mnist":
        return fake.write_mnist(root, folder="FashionMNIST", seed=5)
    if name == "cifar10":
        written = fake.write_cifar10(root)
        _patch_cifar(monkeypatch, root, torchvision.datasets.CIFAR10)
        return written
    if name == "cifar100":
        written = fake.write_cifar100(root)
        _patch_cifar(monkeypatch, root, torchvision.datasets.CIFAR100)
        return written
    if name == "svhn":
        written = fake.write_svhn(root)
        split_list = fake.svhn_md5s(root, torchvision.datasets.SVHN.split_list)
        monkeypatch.setattr(torchvision.datasets.SVHN, "split_list", split_list)
        return written
    raise AssertionError(f"no fake for {name}")


EXPECTED_CLASSES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(torchvision.datasets.MNIST.classes),
    "fashion-mnist": tuple(torchvision.datasets.FashionMNIST.classes),
    "cifar10": fake.CIFAR10_NAMES,
    "cifar100": fake.CIFAR100_NAMES,
    "svhn": tuple(str(d) for d in range(10)),
}

EXPECTED_SHAPE = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32),
                  "cifar100": (3, 32, 32), "svhn": (3, 32, 32)}


def as_unit(images: np.ndarray) -> torch.Tensor:
    """Return uint8 N×C×H×W images as float32 in [0, 1], the way the loader must scale them."""
    return torch.from_numpy(images.astype(np.float32) / np.float32(255.0))


def documented_val_indices(labels: np.ndarray, name: str) -> set[int]:
    """Recompute the documented rule: per class, order by sha256("unlearn-<name>-v1:<i>"), take round(0.1 n)."""
    chosen: set[int] = set()
    for cls in np.unique(labels):
        members = sorted(np.flatnonzero(labels == cls).tolist(),
                         key=lambda i: hashlib.sha256(f"unlearn-{name}-v1:{i}".encode()).digest())
        chosen.update(members[: int(round(0.1 * len(members)))])
    return chosen


def positions_in(images: torch.Tensor, written: np.ndarray) -> list[int]:
    """Return, for each loaded image, the index of the identical written image (fails if there is none)."""
    lookup = {as_unit(written[i : i + 1])[0].numpy().tobytes(): i for i in range(len(written))}
    assert len(lookup) == len(written), "fake images must be pairwise distinct"
    found = [lookup.get(img.numpy().tobytes()) for img in images]
    assert None not in found, "a loaded image matches no written training image"
    return found  # type: ignore[return-value]


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_loads_official_splits_as_float_tensors(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shapes, scaling, layout, labels, classes, the stratified val split and the test split match the files."""
    written = install(name, tmp_path, monkeypatch)
    ds = load_dataset(name, tmp_path)

    assert ds.input_shape == EXPECTED_SHAPE[name]
    assert ds.classes == EXPECTED_CLASSES[name]
    assert ds.num_classes == len(EXPECTED_CLASSES[name])
    for part in (ds.train, ds.val, ds.test):
        assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert part.x.shape[1:] == EXPECTED_SHAPE[name]
        assert len(part.x) == len(part.y) == len(part.index)
        assert float(part.x.min()) >= 0.0 and float(part.x.max()) <= 1.0
        assert torch.equal(part.index, torch.arange(len(part)))

    # Test split: the official test set, unchanged and in order (labels: SVHN's 10 is digit 0).
    assert torch.equal(ds.test.x, as_unit(written.test_x))
    assert torch.equal(ds.test.y, torch.from_numpy(written.test_y))
    c, h, w = fake.MARK
    c = min(c, ds.input_shape[0] - 1)
    assert ds.test.x[3, c, h, w].item() == pytest.approx(fake.mark_value(3) / 255.0)

    # Train + val: a partition of the official training set, each in the original order.
    train_pos = positions_in(ds.train.x, written.train_x)
    val_pos = positions_in(ds.val.x, written.train_x)
    assert len(ds.train) + len(ds.val) == len(written.train_y) == sum(fake.TRAIN_COUNTS)
    assert set(train_pos).isdisjoint(val_pos)
    assert sorted(train_pos + val_pos) == list(range(len(written.train_y)))
    assert train_pos == sorted(train_pos) and val_pos == sorted(val_pos)
    assert torch.equal(ds.train.y, torch.from_numpy(written.train_y[train_pos]))
    assert torch.equal(ds.val.y, torch.from_numpy(written.train_y[val_pos]))
    assert ds.train.x[0, c, h, w].item() == pytest.approx(fake.mark_value(train_pos[0]) / 255.0)

    # Validation: round(0.1 × class size) per class, chosen by the documented sha256 rule.
    class_ids = fake.CIFAR100_CLASS_IDS if name == "cifar100" else tuple(range(10))
    val_counts = {k: int((ds.val.y == k).sum()) for k in class_ids}
    assert val_counts == dict(zip(class_ids, fake.EXPECTED_VAL_COUNTS, strict=True))
    assert set(val_pos) == documented_val_indices(written.train_y, name)


def test_svhn_layout_and_label_ten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SVHN's H×W×C×N array becomes N×C×H×W, and label 10 on disk becomes class 0."""
    written = install("svhn", tmp_path, monkeypatch)
    ds = load_dataset("svhn", tmp_path)
    from scipy.io import loadmat

    raw = loadmat(str(tmp_path / "test_32x32.mat"))
    assert raw["X"].shape == (32, 32, 3, fake.TEST_SIZE)
    c, h, w = fake.MARK
    for i in range(fake.TEST_SIZE):
        assert ds.test.x[i, c, h, w].item() == pytest.approx(raw["X"][h, w, c, i] / 255.0)
        assert raw["X"][h, w, c, i] == fake.mark_value(i)
    assert torch.equal(ds.test.y, torch.from_numpy(np.where(raw["y"][:, 0] == 10, 0, raw["y"][:, 0]).astype(np.int64)))
    train_y = loadmat(str(tmp_path / "train_32x32.mat"))["y"][:, 0]
    assert 0 not in train_y and int((train_y == 10).sum()) == fake.TRAIN_COUNTS[0] == int((written.train_y == 0).sum())
    assert int((ds.train.y == 0).sum()) + int((ds.val.y == 0).sum()) == fake.TRAIN_COUNTS[0]
    assert int(ds.train.y.max()) <= 9 and int(ds.val.y.max()) <= 9


def test_cifar_keeps_channels_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CIFAR row's three 1024-byte planes become channels 0, 1, 2 (the NHWC→NCHW permute is right)."""
    install("cifar10", tmp_path, monkeypatch)
    import pickle

    row = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())["data"][0]
    ds = load_dataset("cifar10", tmp_path)
    for ch in range(3):
        for h, w in ((0, 0), (2, 3), (31, 5), (7, 31)):
            assert ds.test.x[0, ch, h, w].item() == pytest.approx(row[ch * 1024 + h * 32 + w] / 255.0)


def _bump_first_train_pixel(name: str, root: Path) -> None:
    """Change one pixel of the first training image in the files on disk."""
    if name == "mnist":
        path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
        data = bytearray(path.read_bytes())
        data[16] = (data[16] + 1) % 256  # first pixel after the 16-byte header
        path.write_bytes(bytes(data))
    elif name == "cifar10":
        import pickle

        path = root / "cifar-10-batches-py" / "data_batch_1"
        batch = pickle.loads(path.read_bytes())
        batch["data"][0, 0] = (int(batch["data"][0, 0]) + 1) % 256
        path.write_bytes(pickle.dumps(batch))
    else:
        raise AssertionError(name)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_reload_is_identical_and_fingerprint_tracks_pixels(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading twice gives equal tensors and fingerprints; one changed pixel changes the fingerprint."""
    install(name, tmp_path, monkeypatch)
    first, second = load_dataset(name, tmp_path), load_dataset(name, tmp_path)
    for a, b in ((first.train, second.train), (first.val, second.val), (first.test, second.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.index, b.index)
    assert first.fingerprint == second.fingerprint

    _bump_first_train_pixel(name, tmp_path)
    if name == "cifar10":
        _patch_cifar(monkeypatch, tmp_path, torchvision.datasets.CIFAR10)
    changed = load_dataset(name, tmp_path)
    assert changed.fingerprint != first.fingerprint
    assert sum(int((a.x != b.x).sum()) for a, b in ((first.train, changed.train), (first.val, changed.val))) == 1


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_missing_dataset_raises_user_error(name: str, tmp_path: Path) -> None:
    """An empty data root gives a UserError naming the dataset and the --download flag."""
    with pytest.raises(UserError) as info:
        load_dataset(name, tmp_path / "empty")
    assert "--download" in str(info.value)
    assert repr(name) in str(info.value)
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*"))


def test_corrupted_cifar_file_raises_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CIFAR file whose md5 no longer matches is reported as a UserError, not a traceback."""
    install("cifar10", tmp_path, monkeypatch)
    _bump_first_train_pixel("cifar10", tmp_path)
    with pytest.raises(UserError, match="--download"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"<html><body>404 Not Found</body></html>\n" * 4, None],
    ids=["empty-file", "html-error-page", "truncated"],
)
def test_corrupted_mnist_file_raises_user_error(
    content: bytes | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged MNIST image file (no md5 guards it) is reported as a UserError mentioning --download."""
    install("mnist", tmp_path, monkeypatch)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000] if content is None else content)
    with pytest.raises(UserError, match="--download"):
        load_dataset("mnist", tmp_path)


def test_mnist_image_label_count_mismatch_raises_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MNIST test set with fewer labels than images is corrupt, not a split whose x and y disagree."""
    written = install("mnist", tmp_path, monkeypatch)
    fake.write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", written.test_y[:-2].astype(np.uint8))
    with pytest.raises(UserError):
        ds = load_dataset("mnist", tmp_path)
        images, labels = len(ds.test.x), len(ds.test.y)
        assert images == labels, f"loaded a test split with {images} images but {labels} labels"


def _recording_download(calls: list[str], writer: Callable[[Path], object]) -> Callable[[object], None]:
    """Return a stand-in for torchvision's `download` that records the call and writes fake files."""

    def download(self: torchvision.datasets.VisionDataset) -> None:
        calls.append(str(self.root))
        writer(Path(self.root))

    return download


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any real network access fail loudly, in case a faked download were ever bypassed."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("fetch", [True, False], ids=["download-flag", "no-download-flag"])
def test_download_flag_reaches_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None, fetch: bool
) -> None:
    """With the flag torchvision's (faked) `download` runs before reading; without it, it never runs."""
    calls: list[str] = []
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", _recording_download(calls, fake.write_mnist))
    root = tmp_path / "fetched"
    if fetch:
        ds = load_dataset("mnist", root, download=fetch)
        assert calls and set(calls) == {str(root)}
        assert len(ds.train) + len(ds.val) == sum(fake.TRAIN_COUNTS) and len(ds.test) == fake.TEST_SIZE
    else:
        fake.write_mnist(root)
        ds = load_dataset("mnist", root, download=fetch)
        assert calls == []
        assert len(ds.train) + len(ds.val) == sum(fake.TRAIN_COUNTS)
        with pytest.raises(UserError, match="--download"):
            load_dataset("mnist", tmp_path / "empty", download=fetch)
        assert calls == []


def test_failed_download_raises_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    """A network failure during an explicit download is a UserError naming the dataset, not a traceback."""

    def unreachable(self: object) -> None:
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", unreachable)
    fetch = True  # the user's explicit flag; the download itself is faked and the network blocked
    with pytest.raises(UserError, match="'cifar10'.*download"):
        load_dataset("cifar10", tmp_path, download=fetch)


SPEC = """\
name: fake-mnist
description: tiny fake MNIST for the CLI test
dataset: mnist
model: small-cnn
train:
  epochs: 1
  batch_size: 16
  lr: 0.05
  momentum: 0.9
  weight_decay: 5.0e-4
  schedule: cosine
  augment: none
eval_batch_size: 1024
metrics: [accuracy, mia-efficacy]
gap_metrics: [UA, RA, TA, MIA-Efficacy]
grid:
  methods: [retrain, finetune]
  forget: ["class:1"]
  seeds: [0, 1]
hparams:
  finetune: {epochs: 1, batch_size: 16}
"""


def _write_spec(tmp_path: Path) -> Path:
    """Write the tiny MNIST benchmark spec and return its path."""
    path = tmp_path / "fake-mnist.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def test_cli_runs_benchmark_on_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`unlearn run` on an MNIST spec reads --data-root and writes one ok record per cell."""
    data_root = tmp_path / "datasets"
    install("mnist", data_root, monkeypatch)
    workdir = tmp_path / "w"
    code = main(["run", "--benchmark", str(_write_spec(tmp_path)), "--workdir", str(workdir),
                 "--data-root", str(data_root), "--seeds", "0", "--no-progress"])
    assert code == 0
    records = sorted((workdir / "data" / "runs").rglob("*.json"))
    assert len(records) == 2
    loaded = [json.loads(p.read_text(encoding="utf-8")) for p in records]
    assert sorted(r["method"] for r in loaded) == ["finetune", "retrain"]
    assert all(r["status"] == "ok" for r in loaded), [r.get("error") for r in loaded]


def test_cli_missing_dataset_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With an empty --data-root the CLI exits 2 with one line pointing at --download and writes nothing."""
    spec = _write_spec(tmp_path)
    workdir, empty = tmp_path / "fresh", tmp_path / "empty-root"
    code = main(["run", "--benchmark", str(spec), "--workdir", str(workdir), "--data-root", str(empty),
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "--download" in lines[0] and "'mnist'" in lines[0]
    assert captured.out == ""
    assert not workdir.exists() or not any(p.is_file() for p in workdir.rglob("*"))
    assert not empty.exists() or not any(p.is_file() for p in empty.rglob("*"))
