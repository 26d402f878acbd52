"""Trained models cached on disk as safetensors, keyed by a hash of everything that determines them.

Entries are written atomically, so concurrent readers see a whole file or none, and `get_or_build` (and
`get_or_build_many`, for a bank of models trained together) holds an exclusive file lock per key while it builds,
so processes that need the same model at once (the workers of a process pool or of a Ray cluster sharing the
directory) build it once: the others wait, then load it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from unlearn.atomic import refuse_directory
from unlearn.checkpoints import load_weights_into, read_weights, save_weights
from unlearn.errors import UserError
from unlearn.hashing import canonical_json, stable_hash
from unlearn.locks import file_lock, lock_path_for

CACHE_VERSION = 1
"""Bump when the training code changes in a way that changes cached models."""

KINDS = ("original", "unlearned", "judge")
"""The cache's folders: original models (the banks' and shadows' too), methods' outputs (oracles among them) and
generation benchmarks' judges. `Workspace.check_writable` checks each before a run trains anything."""


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
        """Load the cached model for `key` into `template()`, or `build()` it, time it and cache it.

        The build runs under the key's lock: a concurrent caller of the same key waits and then loads the model.
        """
        return self.get_or_build_many(kind, [key], lambda _missing: [build()], [template])[0]

    def get_or_build_many(
        self,
        kind: str,
        keys: Sequence[dict[str, Any]],
        build: Callable[[list[int]], Sequence[nn.Module]],
        templates: Sequence[Callable[[], nn.Module]],
    ) -> list[CachedModel]:
        """Load the cached models of `keys`, building the missing ones together with `build(positions)` (it returns
        their models in that order; each is recorded with an equal share of the time it took).

        The build runs under the locks of all the missing keys, taken in hash order so that concurrent callers with
        overlapping keys (two workers training one bank of models) cannot deadlock: one builds, the others wait and
        load what it built. A directory at an entry's path is a StorageError before anything is built.
        """
        if kind not in KINDS:
            raise ValueError(f"cache kind {kind!r} is not one of unlearn.cache.KINDS {KINDS}")
        for key in keys:  # refused now, not after the build
            refuse_directory(self.path(kind, key), "model checkpoint")
        models = [self.load(kind, k, t) for k, t in zip(keys, templates, strict=True)]
        missing = [i for i, m in enumerate(models) if m is None]
        if not missing:
            return models  # type: ignore[return-value]
        with ExitStack() as locks:
            hashes = {self.key_hash(keys[i]): keys[i] for i in missing}
            for h in sorted(hashes):
                locks.enter_context(self.lock(kind, hashes[h]))
            for i in missing:  # built by another process while this one waited
                models[i] = self.load(kind, keys[i], templates[i])
            missing = [i for i in missing if models[i] is None]
            if missing:
                start = time.perf_counter()
                built = list(build(missing))
                share = (time.perf_counter() - start) / len(missing)
                for i, model in zip(missing, built, strict=True):
                    models[i] = self.store(kind, keys[i], model, share)
        return models  # type: ignore[return-value]

    @contextmanager
    def lock(self, kind: str, key: dict[str, Any]) -> Iterator[None]:
        """Hold the exclusive lock of `key` (see `unlearn.locks`: a hidden file next to its entry, removed on
        release; one left by a builder killed with SIGKILL is taken over by the next builder)."""
        with file_lock(lock_path_for(self.path(kind, key))):
            yield
