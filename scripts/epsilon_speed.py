"""Time per-example ε (the NeurIPS 2023 competition's forgetting score) in seconds per forget example.

    python scripts/epsilon_speed.py                      # N = 64 and 512, 1000 examples each
    python scripts/epsilon_speed.py --models 64 --examples 200 --literal-examples 3

The issue's target is well under 0.06 s per example; the competition's own code took 0.6-1.1 s per example at
N = 64. Confidences are random log-odds: the two sides are normal samples with random per-example means and
spreads, so the grids are about as large as real confidences make them. The literal per-example loop
(tests/epsilon_literal.py, the tests' reference) is timed on a few examples for contrast.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see machine facts)

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from epsilon_literal import literal_epsilon  # noqa: E402

from unlearn.metrics.epsilon import per_example_epsilon  # noqa: E402


def confidences(n_models: int, n_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unlearned and retrained log-odds [N, n]: per-example centres in [-2, 8], spreads in [0.3, 3]."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-2.0, 8.0, size=n_examples)
    spread = rng.uniform(0.3, 3.0, size=(2, n_examples))
    shift = rng.normal(scale=0.5, size=n_examples)
    unlearned = centre + spread[0] * rng.normal(size=(n_models, n_examples))
    retrained = centre + shift + spread[1] * rng.normal(size=(n_models, n_examples))
    return unlearned, retrained


def seconds_per_example(fn, unlearned: np.ndarray, retrained: np.ndarray) -> float:
    start = time.perf_counter()
    fn(unlearned, retrained)
    return (time.perf_counter() - start) / unlearned.shape[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, nargs="+", default=[64, 512], help="models per side, N")
    parser.add_argument("--examples", type=int, default=1000, help="forget examples for the vectorised code")
    parser.add_argument("--literal-examples", type=int, default=5, help="examples for the literal loop (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    per_example_epsilon(*confidences(8, 4, args.seed))  # warm up
    for n_models in args.models:
        unlearned, retrained = confidences(n_models, args.examples, args.seed)
        fast = seconds_per_example(per_example_epsilon, unlearned, retrained)
        line = f"N = {n_models:4d}: vectorised {fast:.4f} s/example ({args.examples} examples)"
        if args.literal_examples > 0:
            k = min(args.literal_examples, args.examples)
            slow = seconds_per_example(literal_epsilon, unlearned[:, :k], retrained[:, :k])
            same = np.array_equal(per_example_epsilon(unlearned[:, :k], retrained[:, :k]),
                                  literal_epsilon(unlearned[:, :k], retrained[:, :k]))
            line += f"; literal loop {slow:.4f} s/example ({k} examples, equal: {same}); ×{slow / fast:.0f}"
        print(line, flush=True)
    print("target: well under 0.06 s/example (competition code: 0.6-1.1 s/example at N = 64)")


if __name__ == "__main__":
    main()
