"""Model factories: every model is a `Classifier` (normalize, body, linear head)."""

from __future__ import annotations

from unlearn.models import cnn1d as _cnn1d  # noqa: F401  (registers "cnn1d")
from unlearn.models import mlp as _mlp  # noqa: F401  (registers "mlp")
from unlearn.models import moe as _moe  # noqa: F401  (registers "moe", "moe-residual")
from unlearn.models import resnet as _resnet  # noqa: F401  (registers "resnet18")
from unlearn.models import small_cnn as _small_cnn  # noqa: F401  (registers "small-cnn")
from unlearn.models import vit as _vit  # noqa: F401  (registers "vit")
from unlearn.models.base import MODELS, Blueprint, Classifier, build_model

__all__ = ["MODELS", "Blueprint", "Classifier", "build_model"]
