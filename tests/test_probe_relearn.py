"""Probe recovery and the relearn attack: splits, what they catch, and that they never change the model."""

from __future__ import annotations

import copy

import pytest
import torch

from unlearn.errors import UserError
from unlearn.forget import load_or_build
from unlearn.harness import Classification, Grid, Models, Scoring, plan_grid
from unlearn.metrics import Evaluation, MissingDependency, evaluate
from unlearn.metrics.probe import probe_splits
from unlearn.spec import EvaluationSettings, ProbeSettings, RelearnSettings

METRICS = ["accuracy", "mia-efficacy", "probe", "relearn"]


@pytest.fixture(scope="module")
def probe_spec(digits_spec):
    evaluation = EvaluationSettings(probe=ProbeSettings(shots=5, repeats=3))
    return digits_spec.model_copy(update={"metrics": METRICS, "evaluation": evaluation})


@pytest.fixture(scope="module")
def probe_task(probe_spec, digits_kind) -> Classification:
    return Classification(probe_spec, digits_kind.dataset, torch.device("cpu"))


def group_for(spec, task, workspace, forget: str):
    plan = plan_grid(spec, ["retrain"], [forget], [0])
    protocol, group = Grid(plan, task, workspace).prepare_group(
        plan.forgets[0], load_or_build(workspace.forget_dir, plan.forgets[0], task.dataset, 0), 0)
    return protocol.scoring, group


def hide_class_in_head(model: torch.nn.Module, cls: int) -> torch.nn.Module:
    """The cheapest fake unlearning: the head never predicts `cls`; the features are untouched."""
    hidden = copy.deepcopy(model)
    with torch.no_grad():
        hidden.head.bias[cls] = -1e4
    return hidden


def test_random_forgetting_holds_out_part_of_the_forget_set_and_keeps_it_out_of_probe_train(probe_task):
    train = probe_task.train
    in_forget = torch.zeros(len(train), dtype=torch.bool)
    in_forget[torch.arange(0, 200)] = True
    splits = probe_splits(train, in_forget, None, ProbeSettings(holdout=0.5), seed=3)
    held = set(splits["probe_heldout"].index.tolist())
    assert len(held) == 100 and held <= set(range(200))
    assert held.isdisjoint(splits["probe_train"].index.tolist())
    assert len(splits["probe_train"]) == len(train) - 100
    again = probe_splits(train, in_forget, None, ProbeSettings(holdout=0.5), seed=3)
    other = probe_splits(train, in_forget, None, ProbeSettings(holdout=0.5), seed=4)
    assert again["probe_heldout"].index.tolist() == splits["probe_heldout"].index.tolist()
    assert other["probe_heldout"].index.tolist() != splits["probe_heldout"].index.tolist()


def test_probe_splits_too_small_are_refused_with_the_reason(probe_task):
    train = probe_task.train
    one = torch.zeros(len(train), dtype=torch.bool)
    one[0] = True
    with pytest.raises(UserError, match="probe split too small.*no held-out"):
        probe_splits(train, one, None, ProbeSettings(holdout=0.5), seed=0)
    few = train.subset(torch.arange(0, 30))
    in_forget = torch.zeros(30, dtype=torch.bool)
    in_forget[:10] = True
    with pytest.raises(UserError, match="probe split too small.*at least 25"):
        probe_splits(few, in_forget, None, ProbeSettings(shots=25), seed=0)


def test_a_head_only_fake_is_caught_by_the_probe_but_not_by_forget_accuracy(probe_spec, probe_task, workspace):
    scoring, group = group_for(probe_spec, probe_task, workspace, "class:3")
    assert len(group.splits["probe_heldout"]) == len(group.splits["test_forgotten"])
    fake = hide_class_in_head(group.original, 3)
    scores = scoring.score(scoring.evaluation(fake, group, None)).values
    original, oracle = group.original_metrics, group.oracle_metrics

    assert scores["UA"] == pytest.approx(100.0)  # forget accuracy says: perfectly forgotten
    assert scores["Probe-F"] == original["Probe-F"]  # same features, same probe
    assert scores["Recovery-Gap"] == pytest.approx(original["Probe-F"] - oracle["Probe-F"])
    assert oracle["Recovery-Gap"] == 0.0
    # On digits the oracle's features, which never saw a 3, decode 3s worse from five shots.
    assert scores["Recovery-Gap"] > 5.0


def test_metrics_never_change_the_model(probe_spec, probe_task, workspace):
    scoring, group = group_for(probe_spec, probe_task, workspace, "random:0.1")
    model = copy.deepcopy(group.original)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = scoring.score(scoring.evaluation(model, group, None))
    assert {"Probe-F", "Probe-F-Block", "Recovery-Gap", "Relearn-FA", "Relearn-Steps"} <= set(scores.values)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())


def test_relearn_uses_a_disjoint_attack_subset_and_censors_a_model_that_never_relearns(
    probe_spec, probe_task, workspace
):
    scoring, group = group_for(probe_spec, probe_task, workspace, "class:3")
    info = scoring.score(scoring.evaluation(group.original, group, None)).info["relearn"]
    forget = len(group.splits["forget"])
    assert info["attack_samples"] == max(1, int(0.1 * forget))
    assert info["attack_samples"] + info["scored_samples"] == forget
    assert group.original_metrics["Relearn-Steps"] == 0.0  # the original is already there

    # With an attack that cannot move the weights, a model whose head hides class 3 never gets back to the
    # target, which is the original's accuracy when the reference model (here the original itself) reaches it.
    frozen = probe_spec.evaluation.model_copy(update={"relearn": RelearnSettings(lr=1e-12, steps=3)})
    spec = probe_spec.model_copy(update={"evaluation": frozen})
    scoring2 = Scoring(Models(Classification(spec, probe_task.dataset, probe_task.device), workspace))
    reference = copy.copy(group)
    reference.oracle_eval = scoring2.evaluation(group.original, reference, None)
    scores = scoring2.score(scoring2.evaluation(hide_class_in_head(group.original, 3), reference, None))
    assert scores.values["Relearn-Steps"] == 4.0 and scores.info["relearn"]["reached"] is False
    assert scores.values["Relearn-FA"] == pytest.approx(0.0)
    assert scores.info["relearn"]["target"] == pytest.approx(100.0)


def test_the_oracle_is_never_censored_by_a_target_it_cannot_reach(probe_spec, probe_task, workspace):
    """The target is capped at the best forget accuracy the oracle reaches under the same attack (issue 24: on
    random sets the oracle generalises to ~98 % and never reached the original's 100 %, so it was censored on every
    seed and looked the most resistant model)."""
    frozen = probe_spec.evaluation.model_copy(update={"relearn": RelearnSettings(lr=1e-12, steps=3)})
    spec = probe_spec.model_copy(update={"evaluation": frozen})
    scoring, group = group_for(spec, Classification(spec, probe_task.dataset, probe_task.device), workspace, "class:3")
    oracle, original = group.oracle_scores, group.original_scores
    assert oracle.info["relearn"]["curve"][-1] < original.values["Relearn-FA"] - 1  # it cannot reach the original
    assert oracle.values["Relearn-Steps"] <= 3 and oracle.info["relearn"]["reached"] is True
    assert oracle.info["relearn"]["target"] == pytest.approx(max(oracle.info["relearn"]["curve"]), abs=1e-3)
    assert original.values["Relearn-Steps"] == 0.0  # above the capped target from the start


def test_a_metric_without_its_dependency_names_what_is_missing(probe_task):
    splits = {"forget": probe_task.train.subset(torch.arange(10)), "retain": probe_task.train}
    ev = Evaluation(probe_task.new_model(0), splits)
    with pytest.raises(MissingDependency, match="metric 'relearn' needs original .*cell's original model"):
        evaluate(ev, ["relearn"])
    with pytest.raises(MissingDependency, match="metric 'probe' needs the split 'probe_train'"):
        evaluate(ev, ["probe"])


def test_a_grid_whose_probe_split_is_too_small_stops_before_anything_trains(tmp_path, capsys):
    from unlearn.cli import main

    workdir = tmp_path / "work"
    code = main(["run", "--workdir", str(workdir), "--methods", "finetune", "--forget", "class:3,random:0.001",
                 "--seeds", "0", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("unlearn: error: probe split too small")
    assert not (workdir / "data" / "cache").exists() and not (workdir / "data" / "runs").exists()
