"""Continual forgetting: task sequences, the few-shot track, per-task oracles and metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import files_under, make_grid, spy_oracle_training

import unlearn.methods.random_label as random_label_module
from unlearn.cli import main
from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.forget import BuildContext, ForgetSpec
from unlearn.forget.continual import few_shot
from unlearn.harness import Workspace
from unlearn.metrics import METRICS
from unlearn.metrics.base import Evaluation

SEQUENCE = "continual:0+1/2+3:shots=4"


def test_seeded_order_gives_disjoint_tasks_and_a_manifest_of_every_task_class(digits_kind):
    ds = digits_kind.dataset
    spec = ForgetSpec.parse("continual:3x2")
    built = spec.builder.build(spec.params, BuildContext(ds, 0))
    tasks = built.provenance["tasks"]
    assert [len(t) for t in tasks] == [2, 2, 2] and len({c for t in tasks for c in t}) == 6
    assert tasks == spec.builder.build(spec.params, BuildContext(ds, 0)).provenance["tasks"]
    assert tasks != spec.builder.build(spec.params, BuildContext(ds, 1)).provenance["tasks"]
    gone = sorted(c for t in tasks for c in t)
    assert list(built.forgotten_classes) == gone
    assert built.indices.tolist() == np.flatnonzero(np.isin(ds.train.y.numpy(), gone)).tolist()
    assert ForgetSpec.parse("continual:1+7/3+5:shots=4").text == "continual:1+7/3+5:shots=4"


@pytest.mark.parametrize("text, message", [
    ("continual:0+1/1+2", "class 1 is in task 1 and task 2"),
    ("continual:2x", "integer"),
    ("continual:3x2:shot=4", "malformed"),
    ("continual:3x2:shots=0", "at least 1"),
])
def test_malformed_sequences_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        ForgetSpec.parse(text)


@pytest.mark.parametrize("text, message", [
    ("continual:5x2", "forgets 10 of digits's 10 classes; at least one class must remain"),
    ("continual:0+1/2+11", "class 11 is not a label of digits"),
    ("continual:3x2:shots=500", "exceeds the"),
])
def test_sequences_that_do_not_fit_exit_2_and_write_nothing(tmp_path, text, message, capsys):
    code = main(["run", "--methods", "retrain", "--forget", text, "--seeds", "0", "--workdir", str(tmp_path),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert files_under(tmp_path / "data") == []


def test_few_shot_draws_k_per_class_and_keeps_them_across_tasks(digits_kind):
    labels = digits_kind.dataset.train.y.numpy()
    a = few_shot(labels, [4, 5, 6], 4, seed=0)
    b = few_shot(labels, [5, 6], 4, seed=0)
    assert np.bincount(labels[a], minlength=10)[[4, 5, 6]].tolist() == [4, 4, 4]
    assert set(b) <= set(a)


def test_each_task_starts_from_the_last_output_and_sees_only_its_track(tmp_path, digits_spec, digits_kind,
                                                                       shared_cache, monkeypatch):
    requests = []
    original_unlearn = random_label_module.RandomLabel.unlearn

    def spy_method(self, request):
        requests.append((request, {k: v.clone() for k, v in request.model.state_dict().items()}))
        out = original_unlearn(self, request)
        requests[-1] += ({k: v.clone() for k, v in out.state_dict().items()},)
        return out

    monkeypatch.setattr(random_label_module.RandomLabel, "unlearn", spy_method)
    oracle_data = spy_oracle_training(monkeypatch)
    workspace = Workspace.at(tmp_path, cache_dir=tmp_path / "cache")  # fresh: the task oracles really train
    runner = make_grid(digits_spec, digits_kind, workspace, ["retrain", "random-label"], [SEQUENCE], [0])
    retrain, rl = runner.run().records

    (first, start1, out1), (second, start2, _) = requests
    assert set(first.forget.y.tolist()) == {0, 1} and set(second.forget.y.tolist()) == {2, 3}
    assert first.track.value == second.track.value == "few-shot" and rl.track == "few-shot"
    assert np.bincount(first.retain.y.numpy(), minlength=10).tolist() == [0, 0] + [4] * 8
    assert np.bincount(second.retain.y.numpy(), minlength=10).tolist() == [0] * 4 + [4] * 6
    assert set(second.retain.index.tolist()) <= set(first.retain.index.tolist())
    assert all(torch.equal(start2[k], out1[k]) for k in out1), "task 2 starts from task 1's output"
    # the oracle of task t trains on the full data without every class forgotten so far
    assert [sorted(set(d.y.tolist())) for d in oracle_data] == [list(range(2, 10)), list(range(4, 10))]
    assert retrain.track == "full" and len(oracle_data[0]) == int((digits_kind.train.y >= 2).sum())

    m = rl.metrics
    assert {"Acc_f@1", "Acc_r@1", "Drop@1", "H@1", "Acc_f@2", "Acc_o@2", "H@2"} <= set(m) and "Acc_o@1" not in m
    assert m["Acc_f@2"] == m["Acc_f"] and m["H"] == pytest.approx(2 * m["Drop"] * m["Acc_r"] / (m["Drop"] + m["Acc_r"]))
    assert m["Acc_f@1"] < rl.original_metrics["Acc_f@1"] - 30, "random-label forgets task 1's classes"
    assert m["Acc_o@2"] < rl.original_metrics["Acc_o@2"] - 30, "and they stay forgotten after task 2"
    assert retrain.metrics["Acc_f@1"] == retrain.metrics["Acc_f@2"] == 0.0
    assert retrain.gaps["Avg. Gap"] == 0.0 and rl.method_info == {"tasks": [{}, {}]}


def test_vit_is_sized_by_image_side_and_refuses_what_it_cannot_tile():
    from unlearn.models import build_model

    small = build_model("vit", 1, (8, 8), 10, [0.5], [0.5])
    assert small(torch.rand(2, 1, 8, 8)).shape == (2, 10) and len(small.body.encoder.layers) == 4
    assert small.probe_block == "body.encoder.layers.encoder_layer_1"
    cifar = build_model("vit", 3, (32, 32), 10, [0.5] * 3, [0.5] * 3)
    assert cifar.body.hidden_dim == 192 and cifar.body.patch_size == 4 and len(cifar.body.encoder.layers) == 12
    with pytest.raises(UserError, match="square"):
        build_model("vit", 1, (8, 12), 10, [0.5], [0.5])
    with pytest.raises(UserError, match="do not tile"):
        build_model("vit", 1, (9, 9), 10, [0.5], [0.5])


@pytest.mark.parametrize("hparam, message", [
    ("gs-lora.rank=100", "rank=100 exceeds the width 64"),
    ("gs-lora.target_modules=.*attention_nowhere", "matches no layer"),
])
def test_gs_lora_settings_that_cannot_fit_the_vit_exit_2_before_training(tmp_path, hparam, message, capsys):
    code = main(["run", "--benchmark", "digits-vit", "--methods", "gs-lora", "--hparam", hparam,
                 "--forget", "continual:3x2", "--seeds", "0", "--workdir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert files_under(tmp_path / "data" / "cache") == [] and files_under(tmp_path / "data" / "runs") == []


def test_one_checkpoint_cannot_be_scored_against_a_sequence(tmp_path, capsys):
    code = main(["evaluate", "--benchmark", "digits-vit", "--forget", "continual:3x2", "--checkpoint",
                 str(tmp_path / "m.safetensors"), "--workdir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "sequence of tasks" in err and len(err.strip().splitlines()) == 1


class Lookup(torch.nn.Module):
    """Predicts `table[x]` for an input holding the integer x."""

    def __init__(self, table: list[int]):
        super().__init__()
        self.table = torch.tensor(table)
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.nn.functional.one_hot(self.table[x[:, 0].long()], 3).float() + 0 * self.anchor


def test_h_is_never_negative_when_a_task_raises_its_classes_accuracy():
    task = TensorData.of(torch.tensor([[0.0], [1.0]]), torch.tensor([0, 1]))
    remaining = TensorData.of(torch.tensor([[2.0]]), torch.tensor([2]))
    splits = {"test_task": task, "test_remaining": remaining}
    start = Evaluation(Lookup([0, 2, 2]), splits)  # Acc_f 50 at the task's start
    after = Evaluation(Lookup([0, 1, 2]), splits, resources={"task-start": lambda: start})  # Acc_f 100, Acc_r 100
    scores = METRICS.get("continual").fn(after)
    assert (scores["Acc_f"], scores["Acc_r"]) == (100.0, 100.0)
    assert scores["Drop"] == 0.0 and scores["H"] == 0.0  # unfloored: Drop -50 and H -200
