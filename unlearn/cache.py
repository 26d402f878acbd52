"""Trained models cached on disk as safetensors, keyed by a hash of everything that determines them."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from unlearn.checkpoints import load_weights_into, read_weights, save_weights
from unlearn.errors import UserError
from unlearn.hashing import canonical_json, stable_hash

CACHE_VERSION = 1
"""Bump when the training code changes in a way that changes cached models."""


@dataclass(frozen=True)
class CachedModel:
    """A model from the cache with how long building it took and whether it was a cache hit."""

    model: nn.Module
    seconds: float
    hit: bool
    key_hash: str


class ModelCache:
    """A directory of `<kind>/<hash>.safetensors` files; the full key is stored inside and checked on load."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def key_hash(self, key: dict[str, Any]) -> str:
        """The hash a model cached under `key` is known by (recorded in results as `models`)."""
        return stable_hash(self._full_key(key))

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        """Where the model for `key` lives."""
        return self.root / kind / f"{stable_hash(self._full_key(key))[:20]}.safetensors"

    @staticmethod
    def _full_key(key: dict[str, Any]) -> dict[str, Any]:
        return {"cache_version": CACHE_VERSION, **key}

    def load(self, kind: str, key: dict[str, Any], template: Callable[[], nn.Module]) -> CachedModel | None:
        """The cached model for `key` loaded into `template()`, or None (an unusable entry is reported and ignored)."""
        path = self.path(kind, key)
        if not path.exists():
            return None
        try:
            state, meta = read_weights(path)
            if meta.get("key") != canonical_json(self._full_key(key)):
                raise UserError(f"{path}: stored key does not match")
            model = template()
            load_weights_into(model, state, str(path))
            return CachedModel(model, float(meta["seconds"]), True, self.key_hash(key))
        except (UserError, KeyError, TypeError, ValueError) as exc:
            print(f"unlearn: warning: ignoring unusable cache entry ({exc}); rebuilding", file=sys.stderr)
            return None

    def store(self, kind: str, key: dict[str, Any], model: nn.Module, seconds: float) -> CachedModel:
        """Cache `model` under `key` (written atomically), recording how long it took to build."""
        full = self._full_key(key)
        save_weights(model, self.path(kind, key), {"key": canonical_json(full), "seconds": seconds})
        return CachedModel(model, seconds, False, self.key_hash(key))

    def get_or_build(
        self, kind: str, key: dict[str, Any], build: Callable[[], nn.Module], template: Callable[[], nn.Module]
    ) -> CachedModel:
        """Load the cached model for `key` into `template()`, or `build()` it, time it and cache it."""
        cached = self.load(kind, key, template)
        if cached is not None:
            return cached
        start = time.perf_counter()
        model = build()
        return self.store(kind, key, model, time.perf_counter() - start)
