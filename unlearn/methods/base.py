"""The method contract: a registered class with typed hyperparameters that maps a request to a model.

A method sees only what its data-access track grants: the forget set, the retain
set when the track allows it, the number of classes, a device, a seed and the
benchmark's training recipe. It never sees the test set, the validation set or the
oracle.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field, TypeAdapter, ValidationError
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.errors import UserError, validation_problem
from unlearn.methods.ranges import AnyReal as AnyReal  # the range rule's opt-out, importable with the range types
from unlearn.methods.ranges import check_ranges
from unlearn.names import brief, check_method_name
from unlearn.registry import Registry, did_you_mean
from unlearn.seeding import generator as seeded_generator
from unlearn.train import Phase, Recipe, StepHook, fit, sgd


class Track(str, Enum):
    """What data a method may use."""

    FULL = "full"
    """The forget set and the whole retain set (the SalUn setting)."""
    FORGET_ONLY = "forget-only"
    """The forget set alone."""
    FEW_SHOT = "few-shot"
    """The forget set and k samples of each remaining class (continual cells with `:shots=k`); methods
    needing the full track get it in this form."""
    DATA_FREE = "data-free"
    """No images at all: the labels of the forgotten classes (`forget_classes`) and the number of classes
    (Score Forgetting Distillation)."""


@dataclass(frozen=True)
class UnlearnRequest:
    """Everything a method is given for one cell, and nothing else."""

    model: nn.Module
    """A private copy of the original model on `device`; the method may change it in place."""
    forget: TensorData | None
    """The forget set; None on the data-free track."""
    retain: TensorData | None
    """The retain set, or None when the method's track does not grant it."""
    num_classes: int
    device: torch.device
    seed: int
    recipe: Recipe
    """The benchmark's training recipe for the original model."""
    new_model: Callable[..., nn.Module]
    """`new_model()`: a freshly initialised model on `device` with the original model's initialisation
    for this seed; `new_model("tag", ...)`: an independent initialisation derived from the seed and tags
    (a random teacher, re-initialised layers)."""
    track: Track
    train_recipe: Callable[[nn.Module, TensorData], nn.Module]
    """`train_recipe(model, data)`: train `model` on `data` exactly as the original model was trained (the
    benchmark's recipe and objective, with this cell's seed); what `retrain` does on the retain set."""
    forget_classes: tuple[int, ...] = ()
    """The forgotten classes of a class-wise forget set (empty for a random set)."""
    progress: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    """What the method reports about its run (JSON values), kept in the record's `method_info`: for
    example how many adapter groups GS-LoRA left non-zero and its trainable fraction."""

    def generator(self, *tags: str) -> torch.Generator:
        """A CPU generator for the purpose named by `tags`, derived from the cell seed."""
        return seeded_generator(self.seed, "method", *tags)

    def require_forget(self) -> TensorData:
        """The forget set; raises on the data-free track (a method bug, not a user error)."""
        if self.forget is None:
            raise RuntimeError(f"the {self.track.value} track grants no forget images")
        return self.forget

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
    search: ClassVar[Mapping[str, Sequence[Any]]] = {}
    """The small grid `unlearn tune` searches: hyperparameter -> candidate values (the learning rate
    and at most two key knobs); empty for methods with nothing to tune."""
    cache_output: ClassVar[bool] = False
    """Cache the returned model on disk (set for deterministic, expensive methods such as retrain)."""
    kinds: ClassVar[tuple[str, ...]] = ("classification",)
    """The benchmark kinds (`BenchmarkSpec.kind`) whose models this method unlearns: classifiers, or
    class-conditional diffusion models ("generation")."""
    paper: ClassVar[str | None] = None
    """URL of the paper that introduced the method (for a generic baseline such as fine-tuning, of the benchmark
    paper whose implementation it follows); None for the oracle. The leaderboard links the method's name to it."""
    docs: ClassVar[str] = "README.md#methods"
    """Where this repository documents a built-in method, relative to its root (the leaderboard links it)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse, when the class is defined, hyperparameters with a number that declares no range (see ranges.py)."""
        super().__init_subclass__(**kwargs)
        check_ranges(cls)

    def __init__(self, hparams: Any = None):
        self.hparams = hparams if hparams is not None else self.HParams()

    @property
    def track(self) -> Track:
        """The data-access track this configuration needs."""
        return Track.FULL

    def check(self, model: nn.Module) -> None:
        """Raise UserError if these hyperparameters cannot work with `model`'s architecture.

        Called once per grid, before any training, with a freshly built model of the
        benchmark (for example: k larger than the number of layers).
        """

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        """Return the unlearned model."""
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method", entry_point_group="unlearn.methods", import_paths=True)


PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]
"""A fraction in (0, 1], such as a mask ratio."""
Momentum = Annotated[float, Field(ge=0, lt=1)]


@dataclass(frozen=True)
class SGDHParams:
    """Hyperparameters of methods that run the shared loop with SGD at a constant learning rate."""

    epochs: PositiveInt = 10
    lr: PositiveFloat = 0.01
    batch_size: PositiveInt = 256
    momentum: Momentum = 0.9
    weight_decay: NonNegativeFloat = 5e-4


def sgd_fit(
    model: nn.Module,
    phases: Sequence[Phase],
    hp: SGDHParams,
    request: UnlearnRequest,
    label: str,
    before_step: StepHook | None = None,
    after_step: StepHook | None = None,
    epoch_start: Callable[[int], None] | None = None,
) -> nn.Module:
    """Run the shared training loop with SGD (momentum, weight decay) at a constant learning rate."""
    optimizer = sgd(model.parameters(), hp.lr, hp.momentum, hp.weight_decay)
    return run_fit(model, phases, hp.epochs, optimizer, request, label, before_step, after_step, epoch_start)


def run_fit(
    model: nn.Module,
    phases: Sequence[Phase],
    epochs: int,
    optimizer: torch.optim.Optimizer,
    request: UnlearnRequest,
    label: str,
    before_step: StepHook | None = None,
    after_step: StepHook | None = None,
    epoch_start: Callable[[int], None] | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> nn.Module:
    """Run the shared training loop with any optimiser (and optional per-epoch `scheduler`), batches shuffled
    by the cell seed; returns `model`."""
    fit(
        model,
        phases,
        epochs=epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=request.generator("batches"),
        before_step=before_step,
        after_step=after_step,
        epoch_start=epoch_start,
        progress=label if request.progress else None,
    )
    return model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with gradients switched off: a teacher or reference that never changes."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def resolve_method(name: str) -> type[Method]:
    """Look up a method class by registered name, plugin name or `module:Class`; check it is a Method.

    The name must be a valid method name (it becomes a folder of records): UserError otherwise."""
    check_method_name(name)
    cls = METHODS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UserError(f"method {name!r} is not a subclass of unlearn.methods.Method")
    return cls


def hparam_options(cls: type[Method]) -> str:
    """A method's hyperparameters with their defaults, e.g. 'epochs=10, lr=0.013', for error messages."""
    return ", ".join(f"{f.name}={getattr(cls.HParams(), f.name)!r}" for f in dataclasses.fields(cls.HParams)) or "none"


def make_hparams(cls: type[Method], name: str, values: Mapping[str, Any]) -> Any:
    """Build `cls.HParams` from `values`, validating names, types and ranges; raise UserError on mistakes.

    Every message names the method's valid options (its hyperparameters and defaults).
    """
    hp_cls = cls.HParams
    fields = [f.name for f in dataclasses.fields(hp_cls)]
    for key in values:
        if key not in fields:
            shown = brief(key)  # a spec's key may be anything YAML can write
            raise UserError(
                f"unknown hyperparameter {shown} for method {name!r}{did_you_mean(str(key)[:100], fields)} "
                f"(valid: {hparam_options(cls)})"
            )
    try:
        hparams = TypeAdapter(hp_cls).validate_python(dict(values))
    except ValidationError as exc:
        got = exc.errors()[0].get("input")
        raise UserError(
            f"hyperparameter {name}.{validation_problem(exc)} (got {brief(got)}; valid: {hparam_options(cls)})"
        ) from None
    for f in dataclasses.fields(hparams):  # inf passes a range such as gt=0, and no result can record it
        value = getattr(hparams, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"hyperparameter {name}.{f.name} must be a finite number, got {value} "
                            f"(valid: {hparam_options(cls)})")
    return hparams


def hparams_dict(hparams: Any) -> dict[str, Any]:
    """A hyperparameter dataclass as a plain dict, for records and hashes."""
    return dataclasses.asdict(hparams)
