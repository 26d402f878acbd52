"""unlearn: an open machine-unlearning benchmark suite."""

from __future__ import annotations

import os

# OpenMP's spin-waiting between the tiny kernels of small models costs up to 8x
# on CPU (see the measured machine facts). libgomp reads this when torch loads,
# so it has to be set before anything imports torch; a user's own value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
