"""Unlearning methods: one file per method, all behind the `METHODS` registry."""

from __future__ import annotations

from unlearn.methods import finetune as _finetune  # noqa: F401
from unlearn.methods import grad_ascent as _grad_ascent  # noqa: F401
from unlearn.methods import random_label as _random_label  # noqa: F401
from unlearn.methods import retrain as _retrain  # noqa: F401
from unlearn.methods.base import (
    METHODS,
    Method,
    NoHParams,
    SGDHParams,
    Track,
    UnlearnRequest,
    hparams_dict,
    make_hparams,
    resolve_method,
    sgd_fit,
)

__all__ = [
    "METHODS",
    "Method",
    "NoHParams",
    "SGDHParams",
    "Track",
    "UnlearnRequest",
    "hparams_dict",
    "make_hparams",
    "resolve_method",
    "sgd_fit",
]
