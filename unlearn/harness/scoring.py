"""Scoring a cell's models: the metrics of the benchmark (and of its forget set), with what they depend on.

A model is scored as an `Evaluation` on the cell's splits, holding as dependencies the group's original
and oracle (their evaluations, so what a metric computes for them is computed once) and what the kind
adds (`Kind.resources`: banks, a judge). The settings the metrics read go into every cell's config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from unlearn.metrics import METRICS, Evaluation, Scores, evaluate

if TYPE_CHECKING:
    from torch import nn

    from unlearn.harness.cells import CellGroup
    from unlearn.harness.models import Models
    from unlearn.harness.plan import MethodChoice


class Scoring:
    """Scores models of one kind's cells with the spec's metrics and the forget set's `extra_metrics`."""

    def __init__(self, models: Models, extra_metrics: Sequence[str] = ()):
        self.models = models
        self.kind = models.kind
        self.spec = models.spec
        self.extra_metrics = tuple(extra_metrics)

    @cached_property
    def evaluation_settings(self) -> dict[str, Any]:
        """The spec's `evaluation:` settings its metrics read (unused families stay out of every config hash)."""
        families = {family for name in self.spec.metrics for family in METRICS.get(name).settings}
        return {k: v for k, v in self.spec.evaluation.model_dump().items() if k in families}

    @property
    def metrics(self) -> list[str]:
        """The metrics of these cells: the benchmark's, then its forget set's own (corrective, continual sets)."""
        return list(dict.fromkeys([*self.spec.metrics, *self.extra_metrics]))

    def config(self) -> dict[str, Any]:
        """What every cell's scores depend on besides its method, forget set and seed: the benchmark, its model,
        data, metrics and evaluation settings (the first keys of a record's config)."""
        return {
            "benchmark": self.spec.name,
            "benchmark_model": self.spec.model_key(),
            "data": self.kind.dataset.fingerprint,
            "metrics": self.metrics,
            "gap_metrics": list(self.spec.gap_metrics),
            "report_metrics": list(self.spec.report_metrics),
            "evaluation": self.evaluation_settings,
        }

    def evaluation(self, model: nn.Module, group: CellGroup, choice: MethodChoice | None) -> Evaluation:
        """`model`, the output of method `choice` (None: the original model), on the group's splits, with the
        group's original and oracle, and what the kind adds, as dependencies."""
        resources: dict[str, Callable[[], Any]] = {
            "oracle": lambda: group.oracle_eval, "original": lambda: group.original_eval,
            **self.kind.resources(group, choice, self.models),
        }
        return Evaluation(model, group.splits, self.spec.eval_batch_size, resources, group.seed, self.kind.settings())

    def score(self, evaluation: Evaluation) -> Scores:
        """All the cell's metrics for one model, one forward pass per split."""
        return evaluate(evaluation, self.metrics)
