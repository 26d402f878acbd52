"""Metrics: plain functions registered with the splits they read; one forward pass per split feeds all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.errors import Diverged
from unlearn.registry import Registry

SPLITS = ("forget", "retain", "val", "test", "test_forgotten")
"""Evaluation splits of a cell: the forget set, the retain set, validation and test (for class-wise
forgetting `val` and `test` hold the remaining classes and `test_forgotten` the forgotten ones)."""


@dataclass(frozen=True)
class SplitOutputs:
    """A model's logits on one split (on CPU) and the split's true labels."""

    logits: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def probs(self) -> Tensor:
        return torch.softmax(self.logits, dim=1)

    @property
    def confidence(self) -> Tensor:
        """Softmax probability of the true label, per sample."""
        return self.probs.gather(1, self.labels[:, None]).squeeze(1)

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy in percent."""
        return 100.0 * float((self.logits.argmax(dim=1) == self.labels).float().mean())


@torch.no_grad()
def forward_outputs(model: nn.Module, data: TensorData, batch_size: int) -> SplitOutputs:
    """Run `model` in eval mode over `data` once and return its logits; non-finite logits raise Diverged."""
    model.eval()
    chunks = [model(x).float().cpu() for x, _ in data.batches(batch_size)]
    logits = torch.cat(chunks) if chunks else torch.empty(0, 0)
    if not bool(torch.isfinite(logits).all()):
        raise Diverged("the model outputs NaN or infinite logits")
    return SplitOutputs(logits, data.y.cpu())


@dataclass
class Evaluation:
    """One model on one cell's splits: each split's outputs are computed on first use and reused."""

    model: nn.Module
    splits: Mapping[str, TensorData]
    batch_size: int = 1024
    _outputs: dict[str, SplitOutputs] = field(default_factory=dict)

    def has(self, split: str) -> bool:
        return split in self.splits

    def __getitem__(self, split: str) -> SplitOutputs:
        if split not in self._outputs:
            self._outputs[split] = forward_outputs(self.model, self.splits[split], self.batch_size)
        return self._outputs[split]


MetricFn = Callable[[Evaluation], dict[str, float]]


@dataclass(frozen=True)
class Metric:
    """A registered metric: its function and the splits (and other inputs) it depends on."""

    name: str
    fn: MetricFn
    needs: tuple[str, ...]
    """Splits the metric reads."""
    produces: tuple[str, ...]
    """Keys it always returns (it may add optional ones, such as TA-forgotten)."""

    def __call__(self, evaluation: Evaluation) -> dict[str, float]:
        missing = [split for split in self.needs if not evaluation.has(split)]
        if missing:
            raise KeyError(f"metric {self.name!r} needs the splits {missing}")
        return self.fn(evaluation)


METRICS: Registry[Metric] = Registry("metric", entry_point_group="unlearn.metrics", import_paths=True)


def metric(name: str, needs: Sequence[str], produces: Sequence[str]) -> Callable[[MetricFn], MetricFn]:
    """Decorator registering a metric function with the splits it reads and the keys it returns."""

    def decorate(fn: MetricFn) -> MetricFn:
        METRICS.register(name)(Metric(name, fn, tuple(needs), tuple(produces)))
        return fn

    return decorate


def evaluate(evaluation: Evaluation, names: Sequence[str]) -> dict[str, float]:
    """Compute the named metrics on one model; they share its cached forward passes."""
    values: dict[str, float] = {}
    for name in names:
        values.update(METRICS.get(name)(evaluation))
    return values


def gaps(values: Mapping[str, float], oracle: Mapping[str, float], keys: Sequence[str]) -> dict[str, float]:
    """|value − oracle value| for each key, and their mean as 'Avg. Gap' (SalUn's definition)."""
    out = {k: abs(values[k] - oracle[k]) for k in keys}
    out["Avg. Gap"] = sum(out.values()) / len(keys)
    return out
