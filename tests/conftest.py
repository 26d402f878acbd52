"""Shared fixtures: the digits task on CPU and a model cache shared by the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see machine facts)

from pathlib import Path

import pytest
import torch

from unlearn.device import resolve_device
from unlearn.harness import Runner, Task, Workspace, plan_grid
from unlearn.spec import load_benchmark

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the session, so each original model and oracle trains once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def digits_spec():
    return load_benchmark("digits")


@pytest.fixture(scope="session")
def digits_task(digits_spec) -> Task:
    """The digits benchmark on CPU with its data loaded once."""
    workspace = Workspace.at(".")
    return Task.load(digits_spec, workspace, resolve_device("cpu"))


@pytest.fixture
def workspace(tmp_path: Path, shared_cache: Path) -> Workspace:
    """A fresh workspace for one test, sharing the session's model cache."""
    return Workspace.at(tmp_path / "work", cache_dir=shared_cache)


def make_runner(spec, task: Task, workspace: Workspace, methods, forgets, seeds, hparams=None) -> Runner:
    """A Runner for a small grid of the digits benchmark."""
    return Runner(plan_grid(spec, methods, forgets, seeds, hparams), task, workspace)


def files_under(path: Path) -> list[Path]:
    """Every file below `path` (empty when it does not exist)."""
    return [p for p in Path(path).rglob("*") if p.is_file()] if Path(path).exists() else []


def make_request(task: Task, model, forget, retain=None, seed: int = 0, num_classes: int | None = None):
    """An UnlearnRequest on CPU for unit tests of a method (full track when `retain` is given)."""
    from unlearn.methods import Track, UnlearnRequest

    return UnlearnRequest(
        model=model,
        forget=forget,
        retain=retain,
        num_classes=num_classes or task.dataset.num_classes,
        device=torch.device("cpu"),
        seed=seed,
        recipe=task.spec.train,
        new_model=lambda *tags: task.new_model(seed, *tags),
        track=Track.FULL if retain is not None else Track.FORGET_ONLY,
    )
