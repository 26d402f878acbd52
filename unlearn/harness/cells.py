"""A grid's cells and what they share: the (method, forget set, seed) cell, its group and what a run produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from torch import nn

    from unlearn.data import TensorData
    from unlearn.forget import ForgetManifest, ForgetSpec
    from unlearn.harness.plan import MethodChoice
    from unlearn.metrics import Evaluation, Scores
    from unlearn.results import ResultRecord


@dataclass
class Cell:
    """One (method, forget set, seed) cell with its config, config hash and record path."""

    method: MethodChoice
    forget: ForgetSpec
    manifest: ForgetManifest
    seed: int
    config: dict[str, Any]
    config_hash: str
    path: Path


@dataclass(frozen=True)
class GroupSummary:
    """What every record of a group holds besides its own cell: the original's and the oracles' scores and the
    cache keys of those models. Empty for the cells of a group that was never ready (its worker died)."""

    oracle_metrics: dict[str, float] = field(default_factory=dict)
    original_metrics: dict[str, float] = field(default_factory=dict)
    ideal_oracle_metrics: dict[str, float] | None = None
    models: dict[str, str] = field(default_factory=dict)
    undefined: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per reference model ('oracle', 'original', 'ideal_oracle'), its undefined metric keys and why."""

    @classmethod
    def of_record(cls, record: ResultRecord) -> GroupSummary:
        """The summary a record of the group holds."""
        return cls(record.oracle_metrics, record.original_metrics, record.ideal_oracle_metrics, record.models,
                   {who: keys for who, keys in record.undefined.items() if who != "method"})


@dataclass
class CellGroup:
    """What every method of one (forget set, seed) shares: splits, original model, oracle and their scores.

    The original's and the oracle's Evaluations are kept, so what a metric computes for them
    (forward passes, probe accuracies, relearn targets) is computed once for all methods.
    """

    forget: ForgetSpec
    manifest: ForgetManifest
    seed: int
    splits: dict[str, TensorData]
    original: nn.Module
    original_key: str
    oracle_key: str
    original_eval: Evaluation = field(init=False)
    oracle_eval: Evaluation = field(init=False)
    original_scores: Scores = field(init=False)
    oracle_scores: Scores = field(init=False)
    ideal_oracle_scores: Scores | None = None
    """Corrective cells: the oracle retrained without every manipulated sample, not only the identified ones."""
    ideal_oracle_key: str | None = None
    steps: list[Any] = field(default_factory=list)
    """What a protocol keeps per stage (continual: one `TaskStep` per task; this group is the last task's)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """What a kind builds once per group on first use (classification: its model banks)."""

    @property
    def original_metrics(self) -> dict[str, float]:
        return self.original_scores.values

    @property
    def oracle_metrics(self) -> dict[str, float]:
        return self.oracle_scores.values

    def summary(self) -> GroupSummary:
        """What every record of this group copies from it."""
        from unlearn.metrics.base import undefined_keys

        return GroupSummary(
            oracle_metrics=self.oracle_metrics,
            original_metrics=self.original_metrics,
            ideal_oracle_metrics=self.ideal_oracle_scores.values if self.ideal_oracle_scores else None,
            models={"original": self.original_key, "oracle": self.oracle_key,
                    **({"ideal_oracle": self.ideal_oracle_key} if self.ideal_oracle_key else {})},
            undefined={who: undefined_keys(scores) for who, scores in
                       (("oracle", self.oracle_scores), ("original", self.original_scores),
                        ("ideal_oracle", self.ideal_oracle_scores)) if scores is not None},
        )


class Unlearned(NamedTuple):
    """A method's output for one cell: the model, how long it took (as cached, for a cache hit), whether it
    came from the cache, its cache key hash (cached methods only) and what the method reported."""

    model: nn.Module
    seconds: float
    from_cache: bool
    key: str | None
    info: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """A cell's method run, scored: what its record holds besides the cell's description."""

    scores: Scores
    seconds: float
    from_cache: bool
    info: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    """Files saved next to the record (see `Kind.artifacts`)."""


@dataclass
class GridResult:
    """The records of a grid, in grid order, and how many cells ran versus were reused."""

    records: list[ResultRecord] = field(default_factory=list)
    ran: int = 0
    reused: int = 0
