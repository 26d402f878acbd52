"""Metrics behind a registry; every metric reads the shared per-split forward passes."""

from __future__ import annotations

from unlearn.metrics import accuracy as _accuracy  # noqa: F401
from unlearn.metrics import mia as _mia  # noqa: F401
from unlearn.metrics.base import METRICS, Evaluation, Metric, SplitOutputs, evaluate, gaps, metric

__all__ = ["METRICS", "Evaluation", "Metric", "SplitOutputs", "evaluate", "gaps", "metric"]
