"""Metrics behind a registry; every metric reads the shared per-split forward passes."""

from __future__ import annotations

import importlib
import pkgutil

from unlearn.metrics.base import (
    DEPENDENCIES,
    METRICS,
    Evaluation,
    Metric,
    MissingDependency,
    Scores,
    SplitOutputs,
    check_dependencies,
    eval_mode,
    evaluate,
    gaps,
    metric,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # each module registers its metrics

__all__ = [
    "DEPENDENCIES",
    "METRICS",
    "Evaluation",
    "Metric",
    "MissingDependency",
    "Scores",
    "SplitOutputs",
    "check_dependencies",
    "eval_mode",
    "evaluate",
    "gaps",
    "metric",
]
