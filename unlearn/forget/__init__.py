"""Forget sets: builders behind a registry, persisted as index manifests."""

from __future__ import annotations

from unlearn.forget import classwise as _classwise  # noqa: F401  (registers "class")
from unlearn.forget import continual as _continual  # noqa: F401  (registers "continual")
from unlearn.forget import corrective as _corrective  # noqa: F401  (registers "corrective")
from unlearn.forget import memorized as _memorized  # noqa: F401  (registers "memorized")
from unlearn.forget import random as _random  # noqa: F401  (registers "random")
from unlearn.forget import worst_case as _worst_case  # noqa: F401  (registers "worst-case", "worst-case-class")
from unlearn.forget.base import BUILDERS, BuildContext, BuiltSet, ForgetBuilder, ForgetSpec, ModelSource
from unlearn.forget.manifest import ForgetManifest, load_or_build, manifest_path, read_manifest

BUILDERS.declare("task", "unlearn.language.forget:TaskForget")  # the language kind's task forget sets

__all__ = [
    "BUILDERS",
    "BuildContext",
    "BuiltSet",
    "ForgetBuilder",
    "ForgetManifest",
    "ForgetSpec",
    "ModelSource",
    "load_or_build",
    "manifest_path",
    "read_manifest",
]
