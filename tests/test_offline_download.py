"""Without a network, `--download` says the network is unreachable and what to do; a missing dataset's message
gives its folder layout and download size; `unlearn benchmarks` marks GPU-scale benchmarks. Nothing here touches
the network: urllib and sockets are replaced by functions that fail as an offline machine's do."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torchvision

from unlearn.cli import main
from unlearn.data import load_dataset
from unlearn.errors import UserError
from unlearn.spec import load_benchmark, parse_spec


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL opened fails as it does without DNS; returns the URLs torchvision tried."""
    tried: list[str] = []

    def no_dns(request: object, *args: object, **kwargs: object) -> None:
        tried.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    def no_socket(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test opened a socket")

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    monkeypatch.setattr(socket, "create_connection", no_socket)
    return tried


@pytest.mark.parametrize(("name", "layout", "size"), [
    ("cifar10", "cifar-10-batches-py/", "about 170 MB"),  # torchvision raises the URLError itself
    ("mnist", "MNIST/raw/", "about 12 MB"),  # torchvision joins its mirrors' errors into one RuntimeError's text
])
def test_an_offline_download_says_the_network_is_unreachable_and_what_to_do(tmp_path, offline, name, layout, size):
    with pytest.raises(UserError) as info:
        load_dataset(name, tmp_path / "datasets", download=True)
    message = str(info.value)
    assert offline, "torchvision's real download path was not exercised"
    assert "network is unreachable" in message and "Name or service not known" in message
    assert layout in message and size in message and "--data-root" in message
    assert "check the files" not in message and "\n" not in message


def test_a_network_error_wrapped_in_another_exception_is_still_recognised(tmp_path, monkeypatch):
    def download(self: object) -> None:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except OSError as exc:
            raise RuntimeError("download of cifar-10-python.tar.gz failed") from exc

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", download)
    with pytest.raises(UserError, match="network is unreachable"):
        load_dataset("cifar10", tmp_path, download=True)


def test_a_corrupt_download_is_not_called_a_network_failure(tmp_path, monkeypatch):
    def download(self: object) -> None:
        raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", download)
    with pytest.raises(UserError) as info:
        load_dataset("cifar10", tmp_path, download=True)
    assert "network" not in str(info.value) and "check the files" in str(info.value)
    assert "cifar-10-batches-py/" in str(info.value)


@pytest.mark.parametrize(("name", "layout", "size"), [
    ("cifar10", "cifar-10-batches-py/", "about 170 MB"),
    ("cifar100", "cifar-100-python/", "about 169 MB"),
    ("fashion-mnist", "FashionMNIST/raw/", "about 31 MB"),
    ("svhn", "train_32x32.mat and test_32x32.mat", "about 246 MB"),
])
def test_a_missing_dataset_names_its_folder_layout_and_download_size(tmp_path, name, layout, size):
    with pytest.raises(UserError) as info:
        load_dataset(name, tmp_path / "empty")
    message = str(info.value)
    assert f"{tmp_path / 'empty'} should hold {layout}" in message and size in message, message
    assert "--download" in message and "network" not in message


GPU_SPEC = """\
name: {name}
description: a spec for the listing test
dataset: digits
model: mlp
{scale}train: {{epochs: 1, batch_size: 8, lr: 0.1}}
grid: {{methods: [retrain], forget: ["class:3"], seeds: [0, 1]}}
"""


def test_benchmarks_lists_each_benchmark_s_scale(tmp_path, monkeypatch, capsys):
    (tmp_path / "big-one.yaml").write_text(GPU_SPEC.format(name="big-one", scale="scale: gpu\n"))
    (tmp_path / "small-one.yaml").write_text(GPU_SPEC.format(name="small-one", scale=""))
    monkeypatch.setenv("UNLEARN_BENCHMARK_PATH", str(tmp_path))
    assert main(["benchmarks"]) == 0
    lines = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert lines["big-one"] == "GPU" and lines["small-one"] == "CPU"


def test_the_cifar10_benchmarks_are_marked_gpu_scale_and_an_unknown_scale_is_refused():
    assert {load_benchmark(n).scale for n in ("cifar10-resnet18", "cifar10-ddpm")} == {"gpu"}
    assert load_benchmark("digits").scale == "cpu"
    with pytest.raises(UserError, match="scale"):
        parse_spec(GPU_SPEC.format(name="odd", scale="scale: tpu\n"), Path("odd.yaml"))
