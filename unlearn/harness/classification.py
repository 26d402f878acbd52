"""The classification kind: an image (or signal) classifier of the model zoo, trained with cross-entropy.

A cell's splits are forget and retain (the training samples in and out of the forget set), val and test
(without the forgotten classes, for a class-wise set, whose test images form `test_forgotten`), and the
probe splits when a metric needs them. Its metrics may also depend on model banks (`unlearn.banks`) when
the spec's `evaluation.bank.size` is at least 3.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from unlearn.harness.kinds import Kind, forget_mask
from unlearn.metrics import METRICS
from unlearn.metrics.base import SPLITS
from unlearn.metrics.probe import probe_selection, probe_splits
from unlearn.models import Blueprint

if TYPE_CHECKING:
    from unlearn.data import TensorData
    from unlearn.forget import ForgetManifest
    from unlearn.harness.cells import CellGroup
    from unlearn.harness.models import Models
    from unlearn.harness.plan import MethodChoice
    from unlearn.spec import BenchmarkSpec

BANKS = ("oracle-bank", "method-bank", "shadows")
"""The banks a cell can provide; only the oracle bank when the model was unlearned elsewhere."""


class Classification(Kind):
    """A classification benchmark on a device (see the module docstring)."""

    retain_metric = "RA"

    @classmethod
    def provides(cls, spec: BenchmarkSpec, runs_methods: bool = True) -> set[str]:
        """The splits, the original and the oracle, and the banks when `evaluation.bank.size` >= 3 (method banks and
        shadows only where it runs the method)."""
        banks = set(BANKS) if runs_methods else {"oracle-bank"}
        return {*SPLITS, "oracle", "original", *(banks if spec.evaluation.bank.size >= 3 else ())}

    @cached_property
    def uses_probes(self) -> bool:
        return any("probe_train" in METRICS.get(name).needs for name in self.spec.metrics)

    @cached_property
    def blueprint(self) -> Blueprint:
        c, h, w = self.dataset.input_shape
        ds = self.dataset
        return Blueprint(self.spec.model, c, (h, w), ds.num_classes, tuple(ds.mean), tuple(ds.std))

    def splits(self, manifest: ForgetManifest) -> dict[str, TensorData]:
        """The evaluation splits of a cell: forget, retain, val, test (and test_forgotten, class-wise), and
        the probe splits (probe_train, probe_heldout); UserError when the probe splits are too small."""
        in_forget = forget_mask(self.train, manifest)
        splits = {"forget": self.train.where(in_forget), "retain": self.train.where(~in_forget)}
        if manifest.forgotten_classes:
            gone = torch.as_tensor(manifest.forgotten_classes, device=self.device)
            splits["val"] = self.val.where(~torch.isin(self.val.y, gone))
            splits["test"] = self.test.where(~torch.isin(self.test.y, gone))
            forgotten_test = self.test.where(torch.isin(self.test.y, gone))
            if len(forgotten_test):
                splits["test_forgotten"] = forgotten_test
        else:
            splits["val"], splits["test"] = self.val, self.test
        splits.update(self.extra_splits)
        if self.uses_probes:
            splits.update(probe_splits(
                self.train, in_forget, splits.get("test_forgotten"), self.spec.evaluation.probe, probe_seed(manifest)
            ))
        return splits

    def check_splits(self, manifest: ForgetManifest) -> None:
        """Raise UserError if a probe split would be too small, from labels alone."""
        if not self.uses_probes:
            return
        forgotten = None
        if manifest.forgotten_classes:
            gone = torch.as_tensor(manifest.forgotten_classes, device=self.device)
            forgotten = self.test.y[torch.isin(self.test.y, gone)]
            forgotten = forgotten if len(forgotten) else None  # as in `splits`: then D_f is held out instead
        settings = self.spec.evaluation.probe
        probe_selection(self.train.y, forget_mask(self.train, manifest), forgotten, settings, probe_seed(manifest))

    def settings(self) -> dict[str, Any]:
        return {"probe": self.spec.evaluation.probe, "relearn": self.spec.evaluation.relearn}

    def resources(self, group: CellGroup, choice: MethodChoice | None, models: Models) -> dict[str, Callable[[], Any]]:
        """The cell's model banks, when the spec asks for them (built on first use, once per group)."""
        if self.spec.evaluation.bank.size < 3:
            return {}
        from unlearn.banks import cell_banks

        banks = cell_banks(group, models)
        return {
            "oracle-bank": banks.oracle_bank,
            "method-bank": lambda: banks.method_bank(choice),
            "shadows": lambda: banks.shadows(choice),
        }


def probe_seed(manifest: ForgetManifest) -> int:
    """The seed of a cell's probe hold-out: the forget set's own (class-wise sets have none and need none)."""
    return manifest.seed if manifest.seed is not None else 0
