"""The `memorized` forget set: every copy of every image a generation benchmark planted (`unlearn.data.planted`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn.data.base import Dataset
from unlearn.errors import UserError
from unlearn.forget.base import BUILDERS, BuildContext, BuiltSet, ForgetBuilder


@BUILDERS.register("memorized")
class MemorizedForget(ForgetBuilder):
    """memorized — every planted training row (all copies); the forgotten classes are the planted condition ids.

    Only a benchmark whose dataset plants images (`dataset: NAME:memorize=P...`) has them; the set depends on the
    data alone, so one manifest serves every seed. The retrained oracle never sees a planted image: they left their
    real class when they were planted.
    """

    syntax = "memorized (the images a benchmark planted with dataset NAME:memorize=P)"
    seeded = False
    takes_argument = False

    def parse(self, arg: str) -> dict[str, Any]:
        return {}

    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        from unlearn.data.planted import PlantedDataset

        if not isinstance(dataset, PlantedDataset) or not dataset.sources:
            raise UserError(f"the memorized forget set needs a benchmark that planted images; {dataset.name} planted "
                            f"none (plant them with dataset: {dataset.name}:memorize=P in a generation spec)")

    def build(self, params: dict[str, Any], context: BuildContext) -> BuiltSet:
        dataset = context.dataset
        self.check(params, dataset)
        rows = np.flatnonzero(dataset.planted_rows().cpu().numpy()).astype(np.int64)  # type: ignore[attr-defined]
        return BuiltSet(rows, tuple(dataset.planted_ids), {"sources": list(dataset.sources),  # type: ignore[attr-defined]
                                                           "copies": dataset.copies})  # type: ignore[attr-defined]
