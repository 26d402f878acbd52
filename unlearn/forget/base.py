"""Forget-set specifications (`kind:argument`) and the builder registry they resolve through."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from unlearn.data.base import Dataset
from unlearn.errors import UserError
from unlearn.registry import Registry, did_you_mean


@dataclass(frozen=True)
class BuiltSet:
    """What a builder returns: training-set indices, plus the classes forgotten whole (class-wise sets)."""

    indices: np.ndarray
    forgotten_classes: tuple[int, ...] | None = None


class ForgetBuilder(ABC):
    """Turns a parsed spec into training-set indices; one subclass per kind of forget set."""

    version: int = 1
    seeded: bool = True
    """Whether the indices depend on the cell seed (a class-wise set does not)."""
    syntax: str = ""
    """How the spec is written, for `--help` and error messages."""

    @abstractmethod
    def parse(self, arg: str) -> dict[str, Any]:
        """Parse the text after `kind:` into parameters; raise UserError when malformed."""

    @abstractmethod
    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        """Raise UserError when the parameters do not fit `dataset`."""

    @abstractmethod
    def build(self, params: dict[str, Any], dataset: Dataset, seed: int) -> BuiltSet:
        """Select the forget set's training indices."""


BUILDERS: Registry[type[ForgetBuilder]] = Registry("forget-set kind")


@dataclass(frozen=True)
class ForgetSpec:
    """A parsed `--forget` entry such as `random:0.1` or `class:3`."""

    text: str
    kind: str
    params: dict[str, Any]

    @property
    def builder(self) -> ForgetBuilder:
        return BUILDERS.get(self.kind)()

    @classmethod
    def parse(cls, text: str) -> "ForgetSpec":
        """Parse one spec; raise UserError naming the accepted forms when it is malformed."""
        text = text.strip()
        kind, sep, arg = text.partition(":")
        if kind not in BUILDERS.names():
            forms = ", ".join(BUILDERS.get(n).syntax for n in BUILDERS.names())
            raise UserError(f"unknown forget-set kind {kind!r} in {text!r}{did_you_mean(kind, BUILDERS.names())}; use {forms}")
        builder = BUILDERS.get(kind)()
        if not sep or not arg:
            raise UserError(f"malformed forget spec {text!r}: write {builder.syntax}")
        return cls(text=f"{kind}:{arg}", kind=kind, params=builder.parse(arg))
