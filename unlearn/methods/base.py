"""The method contract: a registered class with typed hyperparameters that maps a request to a model.

A method sees only what its data-access track grants: the forget set, the retain
set when the track allows it, the number of classes, a device, a seed and the
benchmark's training recipe. It never sees the test set, the validation set or the
oracle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.errors import UserError, validation_problem
from unlearn.registry import Registry, did_you_mean
from unlearn.seeding import generator as seeded_generator
from unlearn.train import Phase, Recipe, StepHook, fit, sgd


class Track(str, Enum):
    """What data a method may use."""

    FULL = "full"
    """The forget set and the whole retain set (the SalUn setting)."""
    FORGET_ONLY = "forget-only"
    """The forget set alone."""


@dataclass(frozen=True)
class UnlearnRequest:
    """Everything a method is given for one cell, and nothing else."""

    model: nn.Module
    """A private copy of the original model on `device`; the method may change it in place."""
    forget: TensorData
    retain: TensorData | None
    """The retain set, or None when the method's track does not grant it."""
    num_classes: int
    device: torch.device
    seed: int
    recipe: Recipe
    """The benchmark's training recipe for the original model."""
    new_model: Callable[[], nn.Module]
    """A freshly initialised model for this seed (the original model's initialisation), on `device`."""
    track: Track
    progress: bool = False

    def generator(self, *tags: str) -> torch.Generator:
        """A CPU generator for the purpose named by `tags`, derived from the cell seed."""
        return seeded_generator(self.seed, "method", *tags)

    def require_retain(self) -> TensorData:
        """The retain set; raises if the track does not grant it (a method bug, not a user error)."""
        if self.retain is None:
            raise RuntimeError(f"the {self.track.value} track grants no retain data")
        return self.retain


@dataclass(frozen=True)
class NoHParams:
    """A method without hyperparameters."""


class Method:
    """Base class of unlearning methods; subclasses set `HParams` and implement `unlearn`."""

    HParams: ClassVar[type] = NoHParams
    cache_output: ClassVar[bool] = False
    """Cache the returned model on disk (set for deterministic, expensive methods such as retrain)."""

    def __init__(self, hparams: Any = None):
        self.hparams = hparams if hparams is not None else self.HParams()

    @property
    def track(self) -> Track:
        """The data-access track this configuration needs."""
        return Track.FULL

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        """Return the unlearned model."""
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method", entry_point_group="unlearn.methods", import_paths=True)


@dataclass(frozen=True)
class SGDHParams:
    """Hyperparameters of methods that run the shared loop with SGD at a constant learning rate."""

    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4


def sgd_fit(
    model: nn.Module,
    phases: Sequence[Phase],
    hp: SGDHParams,
    request: UnlearnRequest,
    label: str,
    before_step: StepHook | None = None,
    after_step: StepHook | None = None,
) -> nn.Module:
    """Run the shared training loop with SGD (momentum, weight decay) at a constant learning rate."""
    fit(
        model,
        phases,
        epochs=hp.epochs,
        optimizer=sgd(model.parameters(), hp.lr, hp.momentum, hp.weight_decay),
        generator=request.generator("batches"),
        before_step=before_step,
        after_step=after_step,
        progress=label if request.progress else None,
    )
    return model


def resolve_method(name: str) -> type[Method]:
    """Look up a method class by registered name, plugin name or `module:Class`; check it is a Method."""
    cls = METHODS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UserError(f"method {name!r} is not a subclass of unlearn.methods.Method")
    return cls


def make_hparams(cls: type[Method], name: str, values: Mapping[str, Any]) -> Any:
    """Build `cls.HParams` from `values`, validating names and types; raise UserError on mistakes."""
    hp_cls = cls.HParams
    fields = [f.name for f in dataclasses.fields(hp_cls)]
    for key in values:
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise UserError(
                f"unknown hyperparameter {key!r} for method {name!r}{did_you_mean(key, fields)} (known: {known})"
            )
    try:
        return TypeAdapter(hp_cls).validate_python(dict(values))
    except ValidationError as exc:
        got = exc.errors()[0].get("input")
        raise UserError(f"hyperparameter {name}.{validation_problem(exc)} (got {got!r})") from None


def hparams_dict(hparams: Any) -> dict[str, Any]:
    """A hyperparameter dataclass as a plain dict, for records and hashes."""
    return dataclasses.asdict(hparams)
