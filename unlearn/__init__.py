"""unlearn: an open machine-unlearning benchmark suite."""

from __future__ import annotations

import os

# OpenMP's spin-waiting between the tiny kernels of small models costs up to 8x
# on CPU (see the measured machine facts). libgomp reads this when torch loads,
# so it has to be set before anything imports torch; a user's own value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`unlearn.load_model`, imported on first use so that `import unlearn` stays free of torch."""
    if name == "load_model":
        from unlearn.evaluate import load_model

        return load_model
    raise AttributeError(f"module 'unlearn' has no attribute {name!r}")
