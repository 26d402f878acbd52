"""Metrics: plain functions registered with the splits they read; one forward pass per split feeds all."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.errors import Diverged, UserError
from unlearn.registry import Registry

SPLITS = ("forget", "retain", "val", "test", "test_forgotten", "probe_train", "probe_heldout", "manip_true", "manip_target",
          "test_task", "test_remaining", "test_earlier")
"""Evaluation splits of a cell: the forget set, the retain set, validation and test (for class-wise
forgetting `val` and `test` hold the remaining classes and `test_forgotten` the forgotten ones), and
the probe splits (probe-train with true labels, and held-out forgotten samples), and in corrective
cells the manipulated test images with true and with manipulated labels (`unlearn.data.manipulations`), in
continual cells the test images of the task's classes, of the remaining and of the earlier-forgotten ones;
methods see none but the forget set and, on the full track, the retain set."""


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
    """Run `model` (already in eval mode) over `data` once and return its logits; non-finite logits raise Diverged."""
    chunks = [model(x).float().cpu() for x, _ in data.batches(batch_size)]
    logits = torch.cat(chunks) if chunks else torch.empty(0, 0)
    if not bool(torch.isfinite(logits).all()):
        raise Diverged("the model outputs NaN or infinite logits")
    return SplitOutputs(logits, data.y.cpu())


DEPENDENCIES: dict[str, str] = {
    "oracle": "the retrained oracle of the same cell (the harness provides it; `unlearn run` and `unlearn evaluate`)",
    "original": "the cell's original model (the harness provides it; `unlearn run` and `unlearn evaluate`)",
    "oracle-bank": "a bank of N >= 3 retrained oracles of the cell (set `bank: {size: N}` in the benchmark spec)",
    "method-bank": "N >= 3 runs of the method on the cell (set `bank: {size: N}`; only `unlearn run` can make them)",
    "shadows": "shadow models trained on random halves and unlearned (set `bank: {size: N}`; only `unlearn run`)",
    "task-start": "the model at the start of a continual task (cells of a continual forget set only)",
    "judge": "the judge classifier of a generation benchmark (`kind: generation`; `evaluation.generation.judge`)",
    "language": "the task and per-row tasks of a language benchmark's cell (`kind: language`)",
    "planted": "the images a generation benchmark planted (`dataset: NAME:memorize=P`, docs/generation.md)",
}
"""What a metric may depend on besides the splits, with where it comes from (for error messages)."""


class MissingDependency(UserError):
    """A metric needs a split or a model that this evaluation does not provide."""


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode and restore its previous train/eval flags afterwards (metrics never mutate it)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@dataclass
class Evaluation:
    """One model on one cell's splits, with what its metrics may depend on, each computed on first use.

    `resources` maps a dependency name (see DEPENDENCIES) to a zero-argument function
    that builds it; "oracle" and "original" give the Evaluation of that model on the
    same splits, so a value a metric computes for the oracle is computed once per cell.
    `memo` is where metrics keep such per-model values (see `memoized`).
    """

    model: nn.Module
    splits: Mapping[str, TensorData]
    batch_size: int = 1024
    resources: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    seed: int = 0
    """The cell's seed, for metrics that draw at random (probe hold-outs, relearn subsets)."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The benchmark's evaluation settings per metric family (probe, relearn, bank)."""
    _outputs: dict[str, SplitOutputs] = field(default_factory=dict)
    _resolved: dict[str, Any] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        """Whether the split or dependency `name` is available."""
        return name in self.splits or name in self.resources

    def __getitem__(self, split: str) -> SplitOutputs:
        if split not in self._outputs:
            if split not in self.splits:
                raise MissingDependency(f"no split {split!r} in this evaluation")
            with eval_mode(self.model):
                self._outputs[split] = forward_outputs(self.model, self.splits[split], self.batch_size)
        return self._outputs[split]

    def need(self, name: str) -> Any:
        """The dependency `name`, built on first use; MissingDependency if it is not provided."""
        if name not in self._resolved:
            if name not in self.resources:
                raise MissingDependency(f"this evaluation has no {DEPENDENCIES.get(name, name)}")
            self._resolved[name] = self.resources[name]()
        return self._resolved[name]

    def memoized(self, key: Any, compute: Callable[[], Any]) -> Any:
        """`compute()` once per (this model, key): lets a metric reuse what it computed for the oracle."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


@dataclass(frozen=True)
class Scores:
    """What metrics return: numbers by key, and per metric what it used (shadow data, split sizes, N)."""

    values: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)


MetricFn = Callable[[Evaluation], "dict[str, float] | Scores"]


@dataclass(frozen=True)
class Metric:
    """A registered metric: its function, what it depends on and the keys it returns."""

    name: str
    fn: MetricFn
    needs: tuple[str, ...]
    """Splits (see SPLITS) and dependencies (see DEPENDENCIES) the metric reads."""
    produces: tuple[str, ...]
    """Keys it always returns (it may add optional ones, such as TA-forgotten)."""
    settings: tuple[str, ...] = ()
    """The families of the spec's `evaluation:` settings it reads (probe, relearn, bank); they enter
    the config hash of every record the metric is computed for."""
    timings: tuple[str, ...] = ()
    """Keys that measure wall-clock speed (Samples/s): they vary from run to run, so `unlearn reproduce` never
    compares them."""

    def missing(self, available: Callable[[str], bool]) -> list[str]:
        return [name for name in self.needs if not available(name)]

    def __call__(self, evaluation: Evaluation) -> Scores:
        missing = self.missing(evaluation.has)
        if missing:
            raise MissingDependency(missing_message(self.name, missing))
        out = self.fn(evaluation)
        return out if isinstance(out, Scores) else Scores(dict(out))


def missing_message(metric_name: str, missing: Sequence[str]) -> str:
    """One line naming what a metric lacks and where each missing thing comes from."""
    parts = [f"{name} ({DEPENDENCIES[name]})" if name in DEPENDENCIES else f"the split {name!r}" for name in missing]
    return f"metric {metric_name!r} needs {'; '.join(parts)}"


METRICS: Registry[Metric] = Registry("metric", entry_point_group="unlearn.metrics", import_paths=True)


def metric(
    name: str, needs: Sequence[str], produces: Sequence[str], settings: Sequence[str] = (),
    timings: Sequence[str] = (),
) -> Callable[[MetricFn], MetricFn]:
    """Decorator registering a metric function with what it reads, the keys it returns, the
    `evaluation:` settings families it reads and which of its keys are timings.

    The function takes an Evaluation and returns a dict of floats, or `Scores` when it
    also records what it used (shadow data, split sizes, number of models).
    """
    unknown = [n for n in needs if n not in SPLITS and n not in DEPENDENCIES]
    if unknown:
        raise ValueError(f"metric {name!r} declares unknown dependencies {unknown}")

    def decorate(fn: MetricFn) -> MetricFn:
        METRICS.register(name)(Metric(name, fn, tuple(needs), tuple(produces), tuple(settings), tuple(timings)))
        return fn

    return decorate


def check_dependencies(names: Sequence[str], available: Callable[[str], bool]) -> None:
    """Raise MissingDependency for the first named metric whose dependencies are not all available."""
    for name in names:
        m = METRICS.get(name)
        missing = m.missing(available)
        if missing:
            raise MissingDependency(missing_message(name, missing))


def evaluate(evaluation: Evaluation, names: Sequence[str]) -> Scores:
    """Compute the named metrics on one model; they share its cached forward passes and dependencies."""
    values: dict[str, float] = {}
    info: dict[str, Any] = {}
    for name in names:
        scores = METRICS.get(name)(evaluation)
        values.update(scores.values)
        if scores.info:
            info[name] = scores.info
    return Scores(values, info)


def undefined_keys(scores: Scores) -> dict[str, str]:
    """Key -> reason for each key a metric left out of `scores` as undefined (its info's "undefined" says why)."""
    out: dict[str, str] = {}
    for name, info in scores.info.items():
        reason = info.get("undefined") if isinstance(info, Mapping) else None
        if isinstance(reason, str) and METRICS.knows(name):
            out.update({k: reason for k in METRICS.get(name).produces if k not in scores.values})
    return out


def gaps(values: Mapping[str, float], oracle: Mapping[str, float], keys: Sequence[str]) -> dict[str, float]:
    """|value − oracle value| for each key, and their mean as 'Avg. Gap' (SalUn's definition).

    A key undefined for the model or the oracle (absent from its values: see `undefined_keys`) has no gap and
    Avg. Gap is the mean over the others (`gaps_left_out` says which and why); no Avg. Gap when none is left.
    """
    defined = [k for k in keys if k in values and k in oracle]
    out = {k: abs(values[k] - oracle[k]) for k in defined}
    if defined:
        out["Avg. Gap"] = sum(out.values()) / len(defined)
    return out


def gaps_left_out(keys: Sequence[str], model: Mapping[str, str], oracle: Mapping[str, str]) -> dict[str, str]:
    """The gap keys Avg. Gap leaves out, with whom each is undefined for, given the model's and the oracle's
    undefined keys (key -> reason, which the record keeps in `undefined`)."""
    out = {}
    for k in keys:
        who = [name for name, found in (("method", model), ("oracle", oracle)) if k in found]
        if who:
            out[k] = f"undefined for the {' and the '.join(who)}"
    return out
