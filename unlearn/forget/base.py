"""Forget-set specifications (`kind:argument`) and the builder registry they resolve through."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from unlearn.data.base import Dataset
from unlearn.errors import UserError
from unlearn.names import FORGET_MAX, FORGET_SPEC, brief, name_problem
from unlearn.registry import Registry, did_you_mean

if TYPE_CHECKING:
    from torch import nn

    from unlearn.data.manipulations import Manipulated


@dataclass(frozen=True)
class BuiltSet:
    """What a builder returns: training-set indices, the classes forgotten whole (class-wise sets), and how
    the set was found (hyperparameters, models used, an objective trajectory), kept in the manifest."""

    indices: np.ndarray
    forgotten_classes: tuple[int, ...] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSource:
    """A benchmark's models, for builders that select samples with the original model (worst-case sets)."""

    benchmark: str
    original_key: Callable[[int], str]
    """Seed -> the hash of everything that determines the original model of that seed (its cache key)."""
    original: Callable[[int], nn.Module]
    """Seed -> the original model (loaded from the cache or trained)."""
    new_model: Callable[..., nn.Module]
    """(seed, *tags) -> a freshly initialised model of the benchmark."""


@dataclass(frozen=True)
class BuildContext:
    """What a builder may use: the benchmark's clean dataset, the seed, and (when given) its models."""

    dataset: Dataset
    seed: int
    models: ModelSource | None = None
    progress: bool = False


class ForgetBuilder(ABC):
    """Turns a parsed spec into training-set indices; one subclass per kind of forget set."""

    version: int = 1
    seeded: bool = True
    """Whether the indices depend on the cell seed (a class-wise set does not)."""
    needs_model: bool = False
    """Whether the set is selected with the benchmark's original model (then it belongs to a benchmark,
    not only to a dataset, and its manifest records which original model it was built from)."""
    syntax: str = ""
    """How the spec is written, for `--help` and error messages."""
    extra_metrics: tuple[str, ...] = ()
    """Metrics its cells compute besides the benchmark's own (corrective sets: the attack's success)."""
    provides: tuple[str, ...] = ()
    """Metric dependencies its cells provide besides the harness's usual ones (continual: "task-start")."""
    takes_argument: bool = True
    """False for a set named by its kind alone (`memorized`): its spec is the bare kind, with no `:argument`."""
    protocol: str = "single"
    """How its cells run (`unlearn.harness.protocols`): "single" (one unlearning call), "corrective" (one call on
    manipulated data) or "continual" (one call per task, in sequence)."""

    @abstractmethod
    def parse(self, arg: str) -> dict[str, Any]:
        """Parse the text after `kind:` into parameters; raise UserError when malformed."""

    @abstractmethod
    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        """Raise UserError when the parameters do not fit `dataset`."""

    @abstractmethod
    def build(self, params: dict[str, Any], context: BuildContext) -> BuiltSet:
        """Select the forget set's training indices."""

    def canonical(self, params: dict[str, Any]) -> str | None:
        """The spec's argument written canonically (None: as the user wrote it)."""
        return None

    def manipulation_key(self, params: dict[str, Any]) -> str | None:
        """What determines `manipulation` besides the data and seed (sets with equal keys share their manipulated
        data, original model and oracles); None when the set does not manipulate the data."""
        return None

    def manipulation(self, params: dict[str, Any], dataset: Dataset, seed: int) -> Manipulated | None:
        """The training data the cell's original model is trained on, when the forget set belongs to a
        manipulation of it (corrective sets); None for the benchmark's own training data."""
        return None


BUILDERS: Registry[type[ForgetBuilder]] = Registry("forget-set kind")


def parse_fraction(text: str, what: str, *, closed: bool = False) -> float:
    """`text` as a fraction in (0, 1), or in (0, 1] when `closed`; UserError naming `what` otherwise."""
    interval = "(0, 1]" if closed else "(0, 1)"
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{what} must be a number in {interval}, not {text!r}") from None
    if not (0.0 < value <= 1.0 if closed else 0.0 < value < 1.0):
        raise UserError(f"{what} {text} is outside {interval}")
    return value


@dataclass(frozen=True)
class ForgetSpec:
    """A parsed `--forget` entry such as `random:0.1` or `class:3`."""

    text: str
    kind: str
    params: dict[str, Any]

    @property
    def builder(self) -> ForgetBuilder:
        return BUILDERS.get(self.kind)()

    def manipulation(self, dataset: Dataset, seed: int) -> Manipulated | None:
        """The manipulated training data of this forget set's cells (None: the benchmark's own)."""
        return self.builder.manipulation(self.params, dataset, seed)

    @classmethod
    def parse(cls, text: str) -> ForgetSpec:
        """Parse one spec; raise UserError naming the accepted forms when it is malformed."""
        text = text.strip()
        kind, sep, arg = text.partition(":")
        if kind not in BUILDERS.names():
            forms = ", ".join(BUILDERS.get(n).syntax for n in BUILDERS.names())
            kind = kind if len(kind) <= 40 else brief(kind)
            raise UserError(f"unknown forget-set kind {kind!r} in {brief(text)}{did_you_mean(kind, BUILDERS.names())}; "
                            f"use {forms}")
        builder = BUILDERS.get(kind)()
        if not builder.takes_argument:
            if sep:
                raise UserError(f"malformed forget spec {brief(text)}: {kind} takes no argument; write {builder.syntax}")
            return cls(text=kind, kind=kind, params=builder.parse(""))
        if not sep or not arg:
            raise UserError(f"malformed forget spec {text!r}: write {builder.syntax}")
        params = builder.parse(arg)
        canonical = f"{kind}:{builder.canonical(params) or arg}"
        problem = name_problem(canonical, FORGET_SPEC, FORGET_MAX)
        if problem is not None:  # the text names manifest files and record folders
            raise UserError(f"forget spec {brief(text)} {problem}: write {builder.syntax}")
        return cls(text=canonical, kind=kind, params=params)
