"""In-memory tensor datasets: the whole split lives on the device, batches are index slices."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TensorData:
    """Images `x` (float, N×C×H×W, values in [0, 1]), labels `y` (int64) and `index`.

    `index` is each sample's position in the split it was cut from (for the training
    split: the training-set index a forget manifest refers to), so a subset always
    knows exactly which samples it holds.
    """

    x: Tensor
    y: Tensor
    index: Tensor

    @classmethod
    def of(cls, x: Tensor, y: Tensor) -> TensorData:
        """Wrap a whole split, indexing its samples 0..N-1."""
        return cls(x, y.long(), torch.arange(len(y), device=y.device))

    @classmethod
    def taken(cls, x: Tensor, y: Tensor, positions: Sequence[int] | Tensor) -> TensorData:
        """A new split of the samples of `x`, `y` at `positions`, indexed 0..N-1 (a dataset cut by a split rule)."""
        pos = torch.as_tensor(positions, dtype=torch.long)
        return cls.of(x[pos], y[pos])

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, positions: Tensor | Sequence[int]) -> TensorData:
        """The samples at `positions` (positions in this object, not `index` values)."""
        pos = torch.as_tensor(positions, dtype=torch.long, device=self.x.device)
        return TensorData(self.x[pos], self.y[pos], self.index[pos])

    def where(self, keep: Tensor) -> TensorData:
        """The samples for which the boolean tensor `keep` is true."""
        return self.subset(torch.nonzero(keep, as_tuple=False).flatten())

    def concat(self, other: TensorData) -> TensorData:
        """These samples followed by `other`'s."""
        return TensorData(
            torch.cat([self.x, other.x]), torch.cat([self.y, other.y]), torch.cat([self.index, other.index])
        )

    def with_labels(self, y: Tensor) -> TensorData:
        """The same samples with labels `y` (e.g. random labels, or a flag a loss reads)."""
        if y.shape != self.y.shape:
            raise ValueError(f"labels of shape {tuple(y.shape)} for {len(self)} samples")
        return TensorData(self.x, y.to(self.y.device, torch.long), self.index)

    def to(self, device: torch.device | str) -> TensorData:
        """A copy on `device` (no copy when already there)."""
        return TensorData(self.x.to(device), self.y.to(device), self.index.to(device))

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (x, y) mini-batches; shuffled with a CPU `generator` so the order is device-independent."""
        n = len(self)
        order = torch.randperm(n, generator=generator).to(self.x.device) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                yield self.x[start : start + batch_size], self.y[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                yield self.x[idx], self.y[idx]
