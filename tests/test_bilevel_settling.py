"""The bi-level selection picks the iterate with the best upper objective, reports whether it settled, and is
deterministic. The lower level's losses are scripted here, so the upper-level path is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import unlearn.forget.bilevel as bilevel
from unlearn.data.tensors import TensorData
from unlearn.forget.bilevel import BilevelSettings, select
from unlearn.seeding import derive_seed

N = 4  # groups, one sample each; the budget is one group


def scripted(monkeypatch, path: list[int], objectives: list[float]) -> None:
    """Make upper iteration t see the loss `objectives[t]` on its own group `path[t]`, and the lowest loss on
    `path[t + 1]`, so that the (large) upper step moves the whole weight there."""
    calls = iter(range(len(path)))

    def fake_loss(model, data):
        t = next(calls)
        loss = torch.full((N,), 5.0)
        if t + 1 < len(path):
            loss[path[t + 1]] = 1e-3
        loss[path[t]] = objectives[t]
        return loss

    monkeypatch.setattr(bilevel, "per_sample_loss", fake_loss)


def run(path_from_start, objectives, monkeypatch, seed=0):
    start = int(np.random.default_rng(derive_seed(seed, "bilevel-init")).choice(N, size=1, replace=False)[0])
    others = [g for g in range(N) if g != start]
    path = [start if p == "start" else others[p] for p in path_from_start]
    scripted(monkeypatch, path, objectives)
    data = TensorData.of(torch.eye(N), torch.arange(N) % 2)
    torch.manual_seed(0)
    model = nn.Linear(N, 2)
    settings = BilevelSettings(upper_iters=len(path), lower_epochs=1, batch_size=N)
    return path, select(lambda: model, data, np.arange(N), 1, settings, seed, name_members=True)


def test_the_set_is_the_iterate_with_the_best_upper_objective_not_the_last(monkeypatch):
    path, sel = run(["start", 0, 1, 2], [0.9, 0.1, 0.5, 0.4], monkeypatch)
    assert [row["selection"] for row in sel.trajectory] == [[g] for g in path]
    assert [row["objective"] for row in sel.trajectory] == pytest.approx([0.9, 0.1, 0.5, 0.4])
    assert sel.chosen.tolist() == [path[1]] != [path[-1]]
    report = sel.convergence
    assert report["best_iteration"] == 2 and report["best_objective"] == pytest.approx(0.1)
    assert report["steps"] == 3 and report["steps_changed"] == 3 and report["stable_last"] == 0
    assert report["converged"] is False and "last" in report["rule"]


def test_a_selection_that_stays_put_for_the_last_steps_is_reported_converged(monkeypatch):
    path, sel = run(["start", 0, 1, 1, 1, 1], [0.9, 0.5, 0.3, 0.2, 0.25, 0.3], monkeypatch)
    report = sel.convergence
    assert [row["changed"] for row in sel.trajectory] == [None, 1, 1, 0, 0, 0]
    assert report["steps_changed"] == 2 and report["stable_last"] == 3 and report["converged"] is True
    assert sel.chosen.tolist() == [path[3]] and report["best_iteration"] == 4


def test_the_same_seed_selects_the_same_set_along_the_same_path(monkeypatch):
    first = run(["start", 0, 1, 2], [0.9, 0.1, 0.5, 0.4], monkeypatch)[1]
    again = run(["start", 0, 1, 2], [0.9, 0.1, 0.5, 0.4], monkeypatch)[1]
    assert first.chosen.tolist() == again.chosen.tolist() and first.trajectory == again.trajectory
    assert first.convergence == again.convergence
