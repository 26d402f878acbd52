"""Unlearning methods: one file per method, all behind the `METHODS` registry.

Every module of this package registers its method on import; they are all imported
here, so adding a method is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil

from unlearn.methods.base import (
    METHODS,
    Method,
    NoHParams,
    SGDHParams,
    Track,
    UnlearnRequest,
    hparam_options,
    hparams_dict,
    make_hparams,
    resolve_method,
    sgd_fit,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "METHODS",
    "Method",
    "NoHParams",
    "SGDHParams",
    "Track",
    "UnlearnRequest",
    "hparam_options",
    "hparams_dict",
    "make_hparams",
    "resolve_method",
    "sgd_fit",
]
