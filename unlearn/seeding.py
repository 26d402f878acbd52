"""Explicit seeds: every random choice in the harness derives its own stream from the cell seed."""

from __future__ import annotations

import random

import numpy as np
import torch

from unlearn.hashing import sha256_hex


def derive_seed(seed: int, *tags: str) -> int:
    """Derive an independent 63-bit seed for the purpose named by `tags` from a base seed."""
    return int(sha256_hex(":".join([str(seed), *tags]))[:15], 16)


def generator(seed: int, *tags: str) -> torch.Generator:
    """A CPU torch.Generator seeded for the purpose named by `tags` (CPU so streams match on every device)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(seed, *tags))
    return g


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (used before model initialisation)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
