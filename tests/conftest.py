"""Shared fixtures: the digits benchmark on CPU and a model cache shared by the whole session.

The suite is hermetic: it never reads the checkout's leaderboard/, data/ or benchmarks/ as state that can change.
Benchmarks named in tests resolve first to the frozen specs in tests/fixtures/benchmarks (so `unlearn tune` writing
tuned values into benchmarks/digits.yaml cannot change what the tests see), and tests that need leaderboard records
copy the frozen board in tests/fixtures/board (see tests/fixtures/README.md).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see machine facts)

import shutil

import pytest
import torch

from unlearn.device import resolve_device
from unlearn.harness import Classification, Grid, Workspace, plan_grid
from unlearn.spec import load_benchmark

torch.set_num_threads(1)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_SPECS = FIXTURES / "benchmarks"
FIXTURE_RESULTS = FIXTURES / "board" / "results"
os.environ["UNLEARN_BENCHMARK_PATH"] = str(FIXTURE_SPECS)  # also seen by the subprocesses tests start


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the session, so each original model and oracle trains once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def digits_spec():
    return load_benchmark("digits")


@pytest.fixture(scope="session")
def digits_kind(digits_spec) -> Classification:
    """The digits benchmark on CPU with its data loaded once."""
    workspace = Workspace.at(".")
    return Classification.load(digits_spec, workspace, resolve_device("cpu"))


@pytest.fixture
def workspace(tmp_path: Path, shared_cache: Path) -> Workspace:
    """A fresh workspace for one test, sharing the session's model cache."""
    return Workspace.at(tmp_path / "work", cache_dir=shared_cache)


def make_grid(spec, kind: Classification, workspace: Workspace, methods, forgets, seeds, hparams=None) -> Grid:
    """A Grid for a small grid of the digits benchmark."""
    return Grid(plan_grid(spec, methods, forgets, seeds, hparams), kind, workspace)


def spy_oracle_training(monkeypatch) -> list:
    """Record the data every `retrain` run (every oracle the harness trains) is trained on, as TensorData."""
    from unlearn.methods.retrain import Retrain

    seen = []
    original_unlearn = Retrain.unlearn

    def spy(self, request):
        seen.append(request.require_retain())
        return original_unlearn(self, request)

    monkeypatch.setattr(Retrain, "unlearn", spy)
    return seen


@pytest.fixture
def board(tmp_path: Path) -> Path:
    """A private copy of the frozen fixture board's records: LEADERBOARD/results (never the checkout's leaderboard)."""
    target = tmp_path / "leaderboard"
    shutil.copytree(FIXTURE_RESULTS, target / "results")
    return target


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small copy of the digits benchmark as a spec file."""
    import yaml

    spec = yaml.safe_load((FIXTURE_SPECS / "digits.yaml").read_text())
    spec.update(name="digits-mini", metrics=["accuracy", "mia-efficacy"], report_metrics=[],
                hparams={"finetune": {"epochs": 3}, "random-label": spec["hparams"]["random-label"]})
    spec["train"]["epochs"] = 4
    spec.pop("evaluation", None)
    path = tmp_path_factory.mktemp("spec") / "digits-mini.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`unlearn ARGS` in this process: (exit code, stdout, stderr)."""
    from unlearn.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def files_under(path: Path) -> list[Path]:
    """Every file below `path` (empty when it does not exist)."""
    return [p for p in Path(path).rglob("*") if p.is_file()] if Path(path).exists() else []


def make_request(kind: Classification, model, forget, retain=None, seed: int = 0, num_classes: int | None = None,
                 forget_classes: tuple[int, ...] = ()):
    """An UnlearnRequest on CPU for unit tests of a method (full track when `retain` is given; `forget_classes`
    as the harness passes for a class-wise set)."""
    from unlearn.methods import Track, UnlearnRequest

    return UnlearnRequest(
        model=model,
        forget=forget,
        retain=retain,
        num_classes=num_classes or kind.dataset.num_classes,
        device=torch.device("cpu"),
        seed=seed,
        recipe=kind.spec.train,
        new_model=lambda *tags: kind.new_model(seed, *tags),
        track=Track.FULL if retain is not None else Track.FORGET_ONLY,
        train_recipe=lambda model, data: kind.train_recipe(model, data, seed),
        forget_classes=forget_classes,
    )


TINY_DDPM_EPOCHS = 8
"""Epochs of the session's small digits DDPM (about 9 s on one core): enough for method tests that compare
noise predictions, not for recognisable samples."""


@pytest.fixture(scope="session")
def tiny_ddpm(digits_kind):
    """A class-conditional DDPM (the digits-ddpm architecture) trained briefly on the digits training split, on
    CPU; tests must copy it before changing it."""
    from unlearn.models.diffusion import DiffusionLoss, GeneratorBlueprint
    from unlearn.seeding import generator
    from unlearn.spec import Recipe
    from unlearn.train import train_with_recipe

    ds = digits_kind.dataset
    model = GeneratorBlueprint("ddpm-unet", 1, (8, 8), ds.num_classes).build(0)
    recipe = Recipe(epochs=TINY_DDPM_EPOCHS, batch_size=64, lr=1e-3, optimizer="adam", weight_decay=0.0,
                    schedule="constant", max_grad_norm=1.0)
    return train_with_recipe(model, ds.train, recipe, 0, loss=DiffusionLoss(generator(0, "test-ddpm")))


def make_diffusion_request(model, data, forget_classes, track, seed: int = 0):
    """An UnlearnRequest for a diffusion method on CPU: `data` is the digits training split, the forget set its
    samples of `forget_classes`; the track decides what is handed over (as the harness does)."""
    from unlearn.methods import Track, UnlearnRequest
    from unlearn.models.diffusion import GeneratorBlueprint
    from unlearn.spec import Recipe

    gone = torch.isin(data.y, torch.as_tensor(forget_classes))
    blueprint = GeneratorBlueprint("ddpm-unet", 1, (8, 8), 10)
    return UnlearnRequest(
        model=model,
        forget=None if track is Track.DATA_FREE else data.where(gone),
        retain=data.where(~gone) if track is Track.FULL else None,
        num_classes=10,
        device=torch.device("cpu"),
        seed=seed,
        recipe=Recipe(epochs=1, batch_size=64, lr=1e-3, optimizer="adam"),
        new_model=lambda *tags: blueprint.build(seed, *tags),
        track=track,
        train_recipe=lambda m, d: m,
        forget_classes=tuple(forget_classes),
    )
