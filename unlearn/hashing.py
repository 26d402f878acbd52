"""Content hashes of configs and index lists, stable across machines and library versions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np


def canonical_json(obj: Any) -> str:
    """Serialise `obj` to JSON with sorted keys and no whitespace, so equal configs give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def stable_hash(obj: Any) -> str:
    """Return the sha256 hex digest of the canonical JSON of `obj`."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def sha256_hex(data: bytes | str) -> str:
    """Return the sha256 hex digest of raw bytes (or UTF-8 text)."""
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def hash_rank(salt: str, index: int) -> bytes:
    """A pseudo-random but library-independent sort key for item `index` under `salt`.

    Splits and random forget sets order items by this key and take a prefix, so the
    same salt always selects the same items on any machine and any numpy/torch version.
    """
    return hashlib.sha256(f"{salt}:{index}".encode()).digest()


def hash_order(items: Iterable[int], salt: str) -> np.ndarray:
    """`items` (integers) sorted by `hash_rank(salt, item)`: a seeded shuffle that any prefix of is a
    reproducible random subset, nested across sizes."""
    return np.array(sorted(items, key=lambda i: hash_rank(salt, int(i))), dtype=np.int64)
