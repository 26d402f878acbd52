"""Class-wise forget sets: every training sample of one class."""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn.data.base import Dataset
from unlearn.errors import UserError
from unlearn.forget.base import BUILDERS, BuildContext, BuiltSet, ForgetBuilder


@BUILDERS.register("class")
class ClassForget(ForgetBuilder):
    """class:C — all training samples of class C; TA then covers the other classes only.

    The forgotten class's test accuracy is reported separately. The set does not
    depend on the seed, so one manifest serves every seed.
    """

    syntax = "class:LABEL (an integer label of the dataset)"
    seeded = False

    def parse(self, arg: str) -> dict[str, Any]:
        try:
            label = int(arg)
        except ValueError:
            raise UserError(f"malformed forget spec 'class:{arg}': the class must be an integer label") from None
        return {"class": label}

    def canonical(self, params: dict[str, Any]) -> str:
        """The label in ASCII digits: class:03 and class:３ (a full-width digit) are class:3, one set and one file."""
        return str(params["class"])

    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        label = params["class"]
        if not 0 <= label < dataset.num_classes:
            raise UserError(
                f"class {label} is not a label of {dataset.name} (labels are 0..{dataset.num_classes - 1})"
            )
        if not bool((dataset.train.y == label).any()):
            raise UserError(f"class {label} has no training samples in {dataset.name}; nothing to forget")

    def build(self, params: dict[str, Any], context: BuildContext) -> BuiltSet:
        labels = context.dataset.train.y.cpu().numpy()
        return BuiltSet(np.flatnonzero(labels == params["class"]).astype(np.int64), (params["class"],))
