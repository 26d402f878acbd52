"""The range rule: a method's numeric hyperparameters declare their range, or the method class is refused."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Annotated

import annotated_types
import pytest
from pydantic import Field

from unlearn.cli import main
from unlearn.errors import UserError
from unlearn.methods import METHODS, Method, make_hparams, resolve_method
from unlearn.methods.base import AnyReal, Fraction, PositiveInt
from unlearn.methods.ranges import unranged_fields
from unlearn.spec import REPO_ROOT

EXAMPLE = REPO_ROOT / "docs" / "example-plugin"


@pytest.mark.parametrize("name", METHODS.builtin_names())
def test_every_builtin_method_declares_its_ranges(name):
    assert unranged_fields(resolve_method(name).HParams) == []


@dataclass(frozen=True)
class Mixed:
    epochs: PositiveInt = 1
    maybe: Fraction | None = None
    bounded: Annotated[int, Field(ge=1, le=8)] = 2
    interval: Annotated[float, annotated_types.Interval(gt=0, lt=5)] = 1.0
    offset: AnyReal = -3.0
    flag: bool = True
    name: str = "x"
    bare_int: int = 5
    bare_optional: float | None = None
    ranged_only_outside: Annotated[int | None, Field(gt=0)] = None


def test_numbers_without_a_range_are_found_and_others_pass():
    assert unranged_fields(Mixed) == ["bare_int", "bare_optional"]


def test_a_method_with_a_bare_int_is_refused_when_defined():
    @dataclass(frozen=True)
    class LooseHParams:
        lr: float = 0.1

    with pytest.raises(UserError) as caught:
        class Loose(Method):  # noqa: F841 - defining it is the test
            HParams = LooseHParams
    message = str(caught.value)
    assert "\n" not in message
    assert "Loose" in message and "LooseHParams.lr" in message and "PositiveFloat" in message and "AnyReal" in message


def test_a_plugin_with_an_unranged_field_is_one_line_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "loose_plugin.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from unlearn.methods import Method

        @dataclass(frozen=True)
        class H:
            epochs: int = 5

        class Loose(Method):
            HParams = H
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["methods", "loose_plugin:Loose"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "H.epochs is a number without a declared range" in err[0]


def test_the_example_plugin_refuses_a_negative_epoch_count(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from unlearn_example.uniform import UniformForget

    for bad in ({"epochs": -1}, {"epochs": 0}, {"lr": 0}, {"batch_size": -64}, {"forget_weight": -1}):
        with pytest.raises(UserError, match=f"uniform-forget.{next(iter(bad))}"):
            make_hparams(UniformForget, "uniform-forget", bad)
    assert make_hparams(UniformForget, "uniform-forget", {"epochs": 2, "forget_weight": 0}).epochs == 2
