"""Kinds of model: what differs between a classifier, a generator and any kind a plugin adds.

A `Kind` is one benchmark's data on a device together with everything the harness does differently for
its kind of model: the model (`blueprint`, `new_model`), its training (`train_recipe`), a cell's
evaluation splits (`splits`, `check_splits`), what its metrics can depend on (`provides`, `resources`,
`settings`), which forget sets it accepts (`check_forget`) and the files saved next to a record
(`artifacts`). The harness calls these and nothing else, so a new kind is a subclass registered in
`KINDS`: `classification` is the harness's own; the others are entry points of the `unlearn.kinds`
group (this package's `pyproject.toml` names `generation`), so a plugin package adds a kind the same way.

This module imports no torch: a spec's `kind` is looked up here when a grid is planned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from unlearn.errors import UserError
from unlearn.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from unlearn.data import Dataset, TensorData
    from unlearn.forget import ForgetManifest, ForgetSpec
    from unlearn.harness.cells import Cell, CellGroup
    from unlearn.harness.models import Models
    from unlearn.harness.plan import MethodChoice
    from unlearn.harness.workspace import Workspace
    from unlearn.metrics import Evaluation
    from unlearn.spec import BenchmarkSpec


class Kind:
    """A benchmark of one kind on a device: its dataset (kept on the device), model factory, recipe and splits.

    `extra_splits` are added to every cell's splits (a corrective cell's manipulation adds its own evaluation
    splits; see `with_data`).
    """

    forgets: ClassVar[tuple[str, ...] | None] = None
    """The forget-set kinds (`ForgetSpec.kind`) this kind accepts; None: all."""
    retain_metric: ClassVar[str | None] = None
    """The metric key of the retain set's accuracy, which an oracle must keep within a few points of the original
    model's (`Protocol.check_oracles`); None: not checked (the kind has no such training-retain accuracy)."""

    def __init__(self, spec: BenchmarkSpec, dataset: Dataset, device: torch.device,
                 extra_splits: dict[str, TensorData] | None = None):
        self.spec = spec
        self.dataset = dataset
        self.device = device
        self.train = dataset.train.to(device)
        self.val = dataset.val.to(device)
        self.test = dataset.test.to(device)
        self.extra_splits = {k: v.to(device) for k, v in (extra_splits or {}).items()}

    # -- what a grid checks before it loads anything -------------------------------------------------

    @classmethod
    def load(cls, spec: BenchmarkSpec, workspace: Workspace, device: torch.device) -> Kind:
        """The kind with the benchmark's dataset loaded on `device`."""
        from unlearn.data import load_dataset

        return cls(spec, load_dataset(spec.dataset, workspace.data_root, workspace.download), device)

    @classmethod
    def provides(cls, spec: BenchmarkSpec, runs_methods: bool = True) -> set[str]:
        """The dependencies this kind's cells give metrics (splits, models, resources); `runs_methods` is False when
        the model scored was unlearned elsewhere (`unlearn evaluate`)."""
        return {"forget", "retain", "oracle", "original"}

    @classmethod
    def check_forget(cls, spec: BenchmarkSpec, forget: ForgetSpec) -> None:
        """Raise UserError for a forget set this kind cannot run."""
        if cls.forgets is not None and forget.kind not in cls.forgets:
            forms = ", ".join(f"{k}:..." for k in cls.forgets)
            raise UserError(f"{spec.kind} benchmark {spec.name!r} takes forget sets {forms}, not {forget.text!r}")

    def check(self, forgets: Sequence[ForgetSpec], methods: Sequence[MethodChoice] = ()) -> None:
        """Raise UserError if a forget spec does not fit the dataset (e.g. an unknown class) or a method's
        hyperparameters do not fit the model (e.g. more layers than it has)."""
        for forget in forgets:
            forget.builder.check(forget.params, self.dataset)
        for choice in methods:
            choice.instance().check(self.new_model(0))

    # -- models ---------------------------------------------------------------------------------------

    @cached_property
    def blueprint(self) -> Any:
        """The benchmark's model as a picklable factory (`build(seed, *tags, device=...)`)."""
        raise NotImplementedError

    def new_model(self, seed: int, *tags: str) -> nn.Module:
        """A freshly initialised model for `seed` on the device (the global RNG is left untouched).

        Without tags it is the original model's initialisation; with tags, an independent
        one derived from the seed and the tags.
        """
        return self.blueprint.build(seed, *tags, device=self.device)

    def train_recipe(self, model: nn.Module, data: TensorData, seed: int, progress: str | None = None) -> nn.Module:
        """Train `model` on `data` as the original model of `seed` is trained on `train` (the oracle's training; under
        `oracle_steps: original`, for as many optimiser steps)."""
        from unlearn.train import train_with_recipe

        return train_with_recipe(model, data, self.spec.train, seed, progress, reference=len(self.train))

    def original_key(self, seed: int) -> dict[str, Any]:
        """Everything that determines the original model of `seed`."""
        return {"role": "original", **self.spec.model_key(), "data": self.dataset.fingerprint, "seed": seed}

    def with_data(self, dataset: Dataset, extra_splits: dict[str, TensorData]) -> Kind:
        """The same kind on other data (a corrective cell's manipulated dataset), with `extra_splits` in every cell."""
        return type(self)(self.spec, dataset, self.device, extra_splits)

    def with_spec(self, spec: BenchmarkSpec) -> Kind:
        """The same kind and data under another spec of the benchmark (tuning trials score fewer metrics)."""
        return type(self)(spec, self.dataset, self.device, self.extra_splits)

    # -- a cell's data and evaluation ----------------------------------------------------------------

    def splits(self, manifest: ForgetManifest) -> dict[str, TensorData]:
        """The evaluation splits of a cell: at least forget and retain (the training samples in and out of the
        forget set), and `extra_splits`."""
        raise NotImplementedError

    def check_splits(self, manifest: ForgetManifest) -> None:
        """Raise UserError if the cell's splits cannot serve its metrics, cheaply, so that a grid can check every
        cell before anything trains."""

    def settings(self) -> dict[str, Any]:
        """The spec's evaluation settings this kind's metrics read (`Evaluation.settings`)."""
        return {}

    def resources(self, group: CellGroup, choice: MethodChoice | None, models: Models) -> dict[str, Callable[[], Any]]:
        """Dependencies this kind adds to the evaluation of a model of `choice` (None: the original) in `group`,
        each built on first use."""
        return {}

    def artifacts(self, cell: Cell, group: CellGroup, evaluation: Evaluation) -> dict[str, str]:
        """Write files that belong next to the cell's record (before the record, so that it never names a missing
        file) and return them as name -> file name in the record's directory."""
        return {}


KINDS: Registry[type[Kind]] = Registry("kind", entry_point_group="unlearn.kinds")
"""A benchmark spec's `kind` -> its Kind class."""
KINDS.declare("classification", "unlearn.harness.classification:Classification")


def kind_class(name: str) -> type[Kind]:
    """The Kind class registered as `name`; UserError naming the known kinds otherwise."""
    return KINDS.get(name)


def load_kind(spec: BenchmarkSpec, workspace: Workspace, device: torch.device) -> Kind:
    """The benchmark's kind with its dataset loaded on `device`."""
    return kind_class(spec.kind).load(spec, workspace, device)


def forget_mask(train: TensorData, manifest: ForgetManifest) -> torch.Tensor:
    """Booleans over the training split: True for the forget set's samples."""
    import torch

    in_forget = torch.zeros(len(train), dtype=torch.bool, device=train.y.device)
    in_forget[torch.as_tensor(manifest.indices, dtype=torch.long, device=train.y.device)] = True
    return in_forget
