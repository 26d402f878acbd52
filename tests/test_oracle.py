"""The oracle's standard: as many optimiser steps as the original under `oracle_steps: original`, an undertrained
oracle refused before it scores anything."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import files_under
from torch.optim.optimizer import register_optimizer_step_post_hook

from unlearn.cli import main
from unlearn.data.tensors import TensorData
from unlearn.spec import Recipe, load_benchmark


def test_the_default_recipe_keeps_its_hashes_and_original_changes_them():
    plain = Recipe(epochs=30, batch_size=64, lr=0.05)
    same = Recipe(epochs=30, batch_size=64, lr=0.05, oracle_steps="epochs")
    matched = Recipe(epochs=30, batch_size=64, lr=0.05, oracle_steps="original")
    assert "oracle_steps" not in plain.key() and "oracle_steps" not in plain.model_dump()
    assert same.key() == plain.key() and same.model_dump() == plain.model_dump()
    assert matched.key() == {**plain.key(), "oracle_steps": "original"}
    assert "oracle_steps" not in load_benchmark("digits").model_key()["train"]


def test_matched_steps_and_model_banks_are_refused_together(tmp_path):
    from unlearn.errors import UserError
    from unlearn.spec import read_spec

    banks = tmp_path / "banks.yaml"
    banks.write_text(Path(tiny_spec(tmp_path, oracle_steps="original")).read_text() + "evaluation: {bank: {size: 3}}\n")
    with pytest.raises(UserError, match="oracle_steps: original is not implemented for model banks"):
        read_spec(banks)


def steps_and_rates(kind, data: TensorData) -> list[float]:
    """The learning rate of every optimiser step taken training the kind's model on `data` as the harness does."""
    rates: list[float] = []
    hook = register_optimizer_step_post_hook(
        lambda optimizer, args, kwargs: rates.append(optimizer.param_groups[0]["lr"]))
    try:
        kind.train_recipe(kind.new_model(0), data, 0)
    finally:
        hook.remove()
    return rates


@pytest.mark.parametrize("oracle_steps", ["epochs", "original"])
def test_the_oracle_takes_the_originals_step_count_under_oracle_steps_original(digits_kind, oracle_steps):
    recipe = Recipe(epochs=3, batch_size=64, lr=0.05, oracle_steps=oracle_steps)
    spec = digits_kind.spec.model_copy(update={"model": "mlp", "train": recipe})
    kind = digits_kind.with_spec(spec)
    small = kind.train.subset(torch.arange(200))  # D_r: 4 batches an epoch against the original's 20
    original, oracle = steps_and_rates(kind, kind.train), steps_and_rates(kind, small)
    assert len(original) == 3 * math.ceil(len(kind.train) / 64)
    if oracle_steps == "epochs":
        assert len(oracle) == 3 * math.ceil(200 / 64)
        return
    assert len(oracle) == len(original)
    # the cosine spans the oracle's own (scaled) epochs: from lr it only decreases, to below the original's last
    assert oracle[0] == original[0] == 0.05 and oracle[-1] < original[-1]
    assert all(later <= earlier for earlier, later in zip(oracle, oracle[1:], strict=False))


def test_multistep_milestones_scale_with_the_oracles_epochs():
    from unlearn.train import oracle_recipe

    recipe = Recipe(epochs=10, batch_size=10, lr=0.1, schedule="multistep", milestones=[5, 8], oracle_steps="original")
    scaled, steps = oracle_recipe(recipe, 50, 100)  # half the data: 5 batches an epoch against 10
    assert (scaled.epochs, scaled.milestones, steps) == (20, [10, 16], 100)
    assert oracle_recipe(recipe, 100, 100) == (recipe, None)


def tiny_spec(tmp_path, **train) -> str:
    """A digits spec whose 3 epochs train the original (on all of D) far better than an oracle on a tenth of it."""
    spec = {
        "name": "tiny-oracle", "description": "digits, a short recipe", "dataset": "digits", "model": "small-cnn",
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, **train}, "cpu_threads": 1, "metrics": ["accuracy"],
        "gap_metrics": ["UA", "RA", "TA"], "grid": {"methods": ["retrain"], "forget": ["random:0.9"], "seeds": [0, 1]},
    }
    path = tmp_path / "tiny-oracle.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def run(tmp_path, spec: str, forget: str, capsys) -> tuple[int, str]:
    """Exit code and the last line of stderr of `unlearn run` on the retrain cell (stderr's first line says what runs)."""
    code = main(["run", "--benchmark", spec, "--methods", "retrain", "--forget", forget, "--seeds", "0",
                 "--workdir", str(tmp_path / "work"), "--no-progress"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()[-1]


def test_an_undertrained_oracle_is_refused_before_any_cell_is_scored(tmp_path, capsys):
    code, err = run(tmp_path, tiny_spec(tmp_path), "random:0.9", capsys)
    assert code == 2 and err.startswith("unlearn: error: the oracle of random:0.9, seed 0 is undertrained: its RA is")
    assert err.endswith("set `oracle_steps: original` under the spec's `train:`")
    assert files_under(tmp_path / "work" / "data" / "runs") == []
    code, err = run(tmp_path, tiny_spec(tmp_path, oracle_steps="original"), "random:0.9", capsys)
    assert code == 0, err


def test_a_continual_oracle_is_checked_in_every_task(tmp_path, capsys):
    code, err = run(tmp_path, tiny_spec(tmp_path, lr=0.01), "continual:0+1+2+3+4+5/6+7", capsys)
    assert code == 2 and err.startswith("unlearn: error: the oracle of continual:0+1+2+3+4+5/6+7, seed 0, task ")
    assert "is undertrained" in err
