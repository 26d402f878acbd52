"""Trained models cached on disk as safetensors, keyed by a hash of everything that determines them.

Entries are written atomically, so concurrent readers see a whole file or none, and `get_or_build` (and
`get_or_build_many`, for a bank of models trained together) holds an exclusive file lock per key while it builds,
so processes that need the same model at once (the workers of a process pool or of a Ray cluster sharing the
directory) build it once: the others wait, then load it.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

try:
    import fcntl
except ImportError:  # not on POSIX: builds are not serialised across processes (still atomic)
    fcntl = None  # type: ignore[assignment]

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
        load what it built.
        """
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
        """Hold the exclusive lock of `key` (an flock on a hidden file next to its entry, removed on release).

        The holder unlinks the lock file before releasing it, so a waiter that then gets the lock checks that
        the file it locked is still the one at the path, and otherwise locks the new one. A holder killed with
        SIGKILL leaves the empty file behind, unlocked, and the next builder takes it over. Without fcntl, or
        when the lock file cannot be created (a read-only cache: storing will say so), there is no lock.
        """
        path = self.path(kind, key)
        lock_path = path.with_name(f".{path.name}.lock")
        fd = _acquire(lock_path) if fcntl is not None else None
        try:
            yield
        finally:
            if fd is not None:
                with suppress(OSError):
                    lock_path.unlink(missing_ok=True)
                os.close(fd)  # closing releases the flock


def _acquire(lock_path: Path) -> int | None:
    """Open and flock `lock_path`, waiting for its holder; the locked descriptor, or None if it cannot be created."""
    while True:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # the previous holder removed it after we opened it
            same = False
        if same:
            return fd
        os.close(fd)
