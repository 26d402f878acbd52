"""Random forget sets: a uniform random fraction of the training set (10 % and 50 % in SalUn)."""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn.data.base import Dataset
from unlearn.errors import UserError
from unlearn.forget.base import BUILDERS, BuildContext, BuiltSet, ForgetBuilder, parse_fraction
from unlearn.hashing import hash_order


@BUILDERS.register("random")
class RandomForget(ForgetBuilder):
    """random:F — a uniform random fraction F ∈ (0, 1) of the training set, drawn per seed.

    The round(F·N) samples with the smallest sha256("unlearn-random-forget-v1:<seed>:<i>")
    are chosen: no library RNG is involved, so a seed names the same set everywhere, and
    for one seed a smaller fraction is a subset of a larger one.
    """

    syntax = "random:FRACTION (0 < FRACTION < 1)"

    def parse(self, arg: str) -> dict[str, Any]:
        return {"fraction": parse_fraction(arg, "forget fraction")}

    def canonical(self, params: dict[str, Any]) -> str:
        """The fraction's shortest exact decimal: random:0.10, random:.1 and random:1e-1 are all random:0.1."""
        return repr(params["fraction"])

    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        size = self._size(params["fraction"], len(dataset.train))
        if not 0 < size < len(dataset.train):
            raise UserError(
                f"random:{params['fraction']} selects {size} of {len(dataset.train)} training samples; "
                "it must leave a non-empty forget set and retain set"
            )

    @staticmethod
    def _size(fraction: float, n: int) -> int:
        return int(round(fraction * n))

    def build(self, params: dict[str, Any], context: BuildContext) -> BuiltSet:
        n = len(context.dataset.train)
        order = hash_order(range(n), f"unlearn-random-forget-v1:{context.seed}")
        return BuiltSet(np.sort(order[: self._size(params["fraction"], n)]))
