"""What every registered method promises: typed, range-checked reference defaults, a tunable grid that
validates, a documented docstring, and one-line errors naming the valid options."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from unlearn.cli import main
from unlearn.errors import UserError
from unlearn.methods import METHODS, make_hparams, resolve_method

NAMES = METHODS.builtin_names()  # the contract of built-ins, whatever plugins are installed
BAD_VALUES = {"lr": [-0.01, 0.0], "epochs": [-1, 0], "batch_size": [0], "ratio": [0.0, 1.5, -0.5],
              "momentum": [1.0, -0.1], "weight_decay": [-1e-4], "k": [0]}


def fields(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(resolve_method(name).HParams)]


@pytest.mark.parametrize("name", NAMES)
def test_defaults_validate_and_the_docstring_says_what_the_reference_does(name):
    cls = resolve_method(name)
    assert make_hparams(cls, name, {}) == cls.HParams()
    assert cls.__doc__ and len(cls.__doc__.split()) >= 8, f"{name}: say what the method does"


@pytest.mark.parametrize("name", NAMES)
def test_out_of_range_values_are_refused_naming_the_valid_options(name):
    cls = resolve_method(name)
    checked = [(f, v) for f in fields(name) for v in BAD_VALUES.get(f, [])]
    for field, value in checked:
        with pytest.raises(UserError, match=rf"{name}\.{field}.*valid: "):
            make_hparams(cls, name, {field: value})
    with pytest.raises(UserError, match=r"unknown hyperparameter 'no_such_knob'.*valid: "):
        make_hparams(cls, name, {"no_such_knob": 1})


@pytest.mark.parametrize("name", [n for n in NAMES if n != "retrain"])
def test_the_tuning_grid_is_small_starts_with_the_learning_rate_and_validates(name):
    cls = resolve_method(name)
    space = cls.search
    if "lr" in fields(name):
        assert list(space)[0] == "lr", f"{name}: the learning rate is tuned first"
    assert 1 <= len(space) <= 3 and set(space) <= set(fields(name))
    combos = list(itertools.product(*space.values()))
    assert 2 <= len(combos) <= 12
    for combo in combos:
        make_hparams(cls, name, dict(zip(space, combo, strict=True)))


@pytest.mark.parametrize("name", NAMES)
def test_each_method_accepts_its_benchmarks_model_with_its_defaults(name, digits_kind):
    """Every method fits the model of a benchmark whose grid runs it (GS-LoRA needs digits-vit's ViT, the diffusion
    methods digits-ddpm's DDPM, expert deactivation digits-moe's mixture of experts); a method no frozen grid runs,
    the first benchmark of its kind (npo: the digits classifier; subspace-prune: the digits DDPM)."""
    from unlearn.harness import kind_class
    from unlearn.spec import load_benchmark

    specs = (digits_kind.spec, load_benchmark("digits-vit"), load_benchmark("digits-ddpm"), load_benchmark("digits-moe"))
    spec = next((s for s in specs if name in s.grid.methods), None)
    if spec is None:  # the first frozen benchmark of a kind the method unlearns
        spec = next((s for s in specs if s.kind in resolve_method(name).kinds), None)
        assert spec is not None, f"{name}: no frozen benchmark of its kinds {resolve_method(name).kinds}"
    kind = kind_class(spec.kind)(spec, digits_kind.dataset, digits_kind.device)
    resolve_method(name)().check(kind.new_model(0))


def test_gs_lora_refuses_a_model_without_transformer_blocks(digits_kind):
    with pytest.raises(UserError, match="matches no"):
        resolve_method("gs-lora")().check(digits_kind.new_model(0))


@pytest.mark.parametrize(
    "hparam, message",
    [
        ("random-label.lr=-0.5", "random-label.lr: Input should be greater than 0 (got -0.5; valid: epochs=10, lr=0.013"),
        ("salun.ratio=1.5", "salun.ratio: Input should be less than or equal to 1 (got 1.5; valid: "),
        ("ssd.gamma=2", "unknown hyperparameter 'gamma' for method 'ssd' (valid: alpha=10.0, dampening=1.0"),
        ("eu-k.k=9", "eu-k: k=9 but the model has 4 layers"),
    ],
)
def test_a_bad_hyperparameter_on_the_command_line_is_a_one_line_error(tmp_path, capsys, hparam, message):
    method = hparam.split(".")[0]
    code = main(["run", "--methods", method, "--hparam", hparam, "--workdir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert message in err
    assert not (tmp_path / "data" / "runs").exists()
