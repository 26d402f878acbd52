"""Throughput of the CIFAR-10 ResNet-18 training step (images per second), through `unlearn.train.fit`.

    python scripts/cifar10_throughput.py                          # batch 128, 10 timed steps, --device auto
    python scripts/cifar10_throughput.py --device cpu --steps 3 --batch 32

Pipelines, each timed over the same number of optimiser steps after a warm-up:
- on-device: the images live on the device and crop-flip (pad 4, random crop, random flip) runs there, as the
  cifar10-resnet18 benchmark trains;
- no augmentation: the same step without crop-flip (the ceiling the augmentation is measured against);
- loader: for contrast, a torch DataLoader over CPU tensors applying torchvision's RandomCrop(32, padding=4) and
  RandomHorizontalFlip per sample, batches copied to the device (the usual Python data loading).
On CUDA each pipeline runs with mixed precision and channels-last (fit's default there) and in plain float32.
Data is random and CIFAR-shaped (3x32x32, 10 classes): nothing is downloaded.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see machine facts)

import argparse
import time
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from unlearn.data.tensors import TensorData
from unlearn.device import resolve_device
from unlearn.models import Blueprint
from unlearn.train import Augment, Phase, crop_flip, cross_entropy, fit, sgd


class TransformedImages(Dataset):
    """CPU images with torchvision's per-sample crop (padding 4) and flip, as a classic data pipeline does."""

    def __init__(self, x: Tensor, y: Tensor):
        from torchvision.transforms import v2

        self.x, self.y = x, y
        self.transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.x[i]), self.y[i]


class LoaderData:
    """Feeds `fit` from a DataLoader (fit only calls `batches`), copying each batch to `device`."""

    def __init__(self, data: TensorData, device: torch.device, workers: int):
        self.dataset = TransformedImages(data.x.cpu(), data.y.cpu())
        self.device, self.workers = device, workers

    def batches(self, batch_size: int, *, shuffle: bool, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """Shuffled, transformed batches on the device."""
        loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                            num_workers=self.workers, pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def images_per_second(model: torch.nn.Module, data: TensorData | LoaderData, augment: Augment | None, batch: int,
                      steps: int, warmup: int, mixed_precision: bool) -> float:
    """Train `model` for `warmup` untimed then `steps` timed steps of `batch` images; the timed images per second."""
    optimizer = sgd(model.parameters(), lr=0.01)
    phase = Phase(data, cross_entropy, batch, augment=augment)  # type: ignore[arg-type]  (duck-typed loader)
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device

    def run(n: int) -> None:
        fit(model, [phase], epochs=1, optimizer=optimizer, generator=generator, max_steps=n,
            mixed_precision=mixed_precision)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if warmup:
        run(warmup)
    start = time.perf_counter()
    run(steps)
    return steps * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per pipeline (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the loader pipeline")
    parser.add_argument("--threads", type=int, help="torch threads on CPU (default: torch's)")
    parser.add_argument("--no-loader", action="store_true", help="skip the DataLoader pipeline")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    n = args.batch * (args.steps + args.warmup)
    data = TensorData.of(torch.rand(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen))
    on_device = data.to(device)
    model = Blueprint("resnet18", 3, (32, 32), 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)).build(0, device=device)

    pipelines: list[tuple[str, TensorData | LoaderData, Augment | None]] = [
        ("crop-flip on device", on_device, crop_flip),
        ("no augmentation", on_device, None),
    ]
    if not args.no_loader:
        pipelines.append((f"DataLoader + torchvision transforms ({args.workers} workers)",
                          LoaderData(data, device, args.workers), None))
    precisions = [True, False] if device.type == "cuda" else [False]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"ResNet-18 (CIFAR stem) training step on {device} ({name}), batch {args.batch}, {args.steps} timed steps")
    print(f"{'pipeline':<48} {'precision':<28} {'images/s':>9} {'ms/step':>8}")
    for mixed in precisions:
        label = "mixed, channels-last" if mixed else "float32"
        if mixed:
            label += f" ({'bfloat16' if torch.cuda.is_bf16_supported() else 'float16 + scaler'})"
        for title, source, augment in pipelines:
            rate = images_per_second(model, source, augment, args.batch, args.steps, args.warmup, mixed)
            print(f"{title:<48} {label:<28} {rate:>9.1f} {1000 * args.batch / rate:>8.1f}")


if __name__ == "__main__":
    main()
