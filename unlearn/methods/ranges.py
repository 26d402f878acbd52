"""The range rule of hyperparameters: every int or float field of a method's `HParams` declares its valid range.

A bare `epochs: int = 5` accepts `--hparam m.epochs=-1`, and a method then trains for no epoch and
writes an "ok" record. So a method class whose hyperparameter class has a numeric field without a
bound (pydantic's `Field(gt=..., ge=..., lt=..., le=...)` or annotated-types' `Gt`, `Ge`, `Lt`, `Le`,
`Interval`, as in `PositiveInt`, `Fraction` of `unlearn.methods.base`) is refused when it is defined.
A field that may truly take any real value says so with `AnyReal` (or `Annotated[float, UNBOUNDED]`).
Booleans, strings, literals and containers are not numbers here; `X | None` is checked as `X`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Union

import annotated_types
from pydantic.fields import FieldInfo

from unlearn.errors import UserError


class _Unbounded:
    """The marker of a numeric hyperparameter that may take any value (see `AnyReal`)."""

    def __repr__(self) -> str:
        return "UNBOUNDED"


UNBOUNDED = _Unbounded()
"""`Annotated[float, UNBOUNDED]`: this field may take any finite value; the range rule lets it pass."""
AnyReal = Annotated[float, UNBOUNDED]
"""A float hyperparameter with no range (any finite number: NaN and infinity are still refused)."""

_BOUNDS = (annotated_types.Gt, annotated_types.Ge, annotated_types.Lt, annotated_types.Le, annotated_types.Interval)


def _declares_range(metadata: Any) -> bool:
    """Whether one `Annotated` metadata item bounds a number (or opts out with UNBOUNDED)."""
    if metadata is UNBOUNDED or isinstance(metadata, _BOUNDS):
        return True
    if isinstance(metadata, FieldInfo):
        return any(_declares_range(m) for m in metadata.metadata)
    return False


def _unranged(annotation: Any, ranged: bool = False) -> bool:
    """Whether `annotation` holds an int or float with no declared range."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        return _unranged(base, ranged or any(_declares_range(m) for m in metadata))
    if origin is Union or origin is types.UnionType:
        return any(_unranged(arg, ranged) for arg in typing.get_args(annotation))
    return annotation in (int, float) and not ranged  # bool is its own type, never caught here


def unranged_fields(hparams_cls: type) -> list[str]:
    """The int/float fields of a hyperparameter dataclass that declare no range, in field order."""
    if not dataclasses.is_dataclass(hparams_cls):
        return []
    try:
        hints = typing.get_type_hints(hparams_cls, include_extras=True)
    except Exception as exc:  # a name the annotations use that is not importable where the class is defined
        raise UserError(f"hyperparameters {hparams_cls.__qualname__}: cannot read their types ({exc})") from None
    return [f.name for f in dataclasses.fields(hparams_cls) if _unranged(hints.get(f.name, f.type))]


def check_ranges(method_cls: type) -> None:
    """Raise UserError naming the method, its hyperparameter class and the first numeric field without a range."""
    hp_cls = getattr(method_cls, "HParams", None)
    missing = unranged_fields(hp_cls) if isinstance(hp_cls, type) else []
    if missing:
        raise UserError(
            f"method class {method_cls.__qualname__}: hyperparameter {hp_cls.__qualname__}.{missing[0]} is a number "
            "without a declared range; annotate it with a range type from unlearn.methods.base (PositiveInt, "
            "NonNegativeInt, PositiveFloat, NonNegativeFloat, Fraction, Momentum) or Annotated[..., Field(ge=..., "
            "le=...)], or AnyReal if any finite value is valid"
        )
