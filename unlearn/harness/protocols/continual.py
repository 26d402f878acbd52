"""The continual-forgetting protocol: a sequence of class-forgetting tasks, each from the last task's output.

A cell of a continual forget set (`continual:3x2`, `continual:3x2:shots=4`; see
`unlearn.forget.continual`) runs its method once per task:

- task t asks to forget the classes C_t. The method gets, as its forget set, the training
  samples of C_t; as its retain set, those of the classes no task has forgotten yet (with
  `shots=k`: k of them per class, the same k in every task; the track is then "few-shot");
  and as its model the output of task t − 1 (the original model for the first task);
- the oracle of task t is `retrain` on the full data without every class forgotten so far
  (cached, and shared with a class-wise cell of the same classes). The `retrain` row of a
  grid is that oracle in every task: it is the reference, not subject to the few-shot track;
- after each task the model is scored with the benchmark's metrics on the splits of "every
  class forgotten so far" and with the `continual` metric (Acc_f, Acc_r, Acc_o, Drop, H).
  The record's metrics are those after the last task, plus the continual keys of every
  task t as `<key>@t`; gaps compare the last task with its oracle. `method_info` holds what
  the method reported in each task. No checkpoint is selected: the test set is only scored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.forget import ForgetManifest, ForgetSpec
from unlearn.forget.continual import few_shot
from unlearn.forget.manifest import indices_sha256
from unlearn.harness.cells import Cell, CellGroup, Outcome
from unlearn.harness.plan import MethodChoice
from unlearn.harness.protocols.base import Protocol
from unlearn.hashing import stable_hash
from unlearn.methods import Track
from unlearn.metrics import METRICS, Evaluation, Scores
from unlearn.results import ORACLE

TASK_KEYS = METRICS.get("continual").produces


@dataclass
class TaskStep:
    """One task of a continual cell: its classes, the cell group of "everything forgotten so far", the
    oracle's model, and the data the methods get."""

    classes: list[int]
    group: CellGroup
    oracle: nn.Module
    oracle_seconds: float
    request_splits: dict[str, TensorData]
    forget_key: str


class Continual(Protocol):
    """Runs the cells of a continual forget set (see the module docstring)."""

    one_call = False

    def track_of(self, method: MethodChoice, manifest: ForgetManifest) -> str:
        track = method.instance().track
        if manifest.provenance.get("shots") and track is Track.FULL and method.name != ORACLE:
            return Track.FEW_SHOT.value
        return track.value

    def prepare(self, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> CellGroup:
        """Every task's step (oracle trained or loaded, original and oracle scored); returns the last task's group
        with `steps` holding all of them."""
        models, kind, scoring = self.models, self.kind, self.scoring
        tasks: list[list[int]] = manifest.provenance["tasks"]
        shots: int | None = manifest.provenance["shots"]
        original = models.load_or_train_original(seed)
        original_key = kind.original_key(seed)
        labels = kind.train.y.cpu().numpy()
        test = kind.test
        steps: list[TaskStep] = []
        gone: list[int] = []
        for classes in tasks:
            earlier, gone = list(gone), [*gone, *classes]
            indices = np.flatnonzero(np.isin(labels, gone)).tolist()
            so_far = manifest.model_copy(update={
                "indices": indices, "size": len(indices), "sha256": indices_sha256(indices),
                "forgotten_classes": sorted(gone),
            })
            splits = kind.splits(so_far)
            splits["test_task"] = test.where(torch.isin(test.y, torch.as_tensor(classes, device=test.y.device)))
            splits["test_remaining"] = splits["test"]
            if earlier:
                splits["test_earlier"] = test.where(torch.isin(test.y, torch.as_tensor(earlier, device=test.y.device)))
            oracle = models.run_method(models.oracle_choice, original.model, original_key, so_far.sha256, splits, seed)
            group = CellGroup(forget, so_far, seed, splits, original.model, original.key_hash, oracle.key or "")
            remaining = [c for c in range(kind.dataset.num_classes) if c not in gone]
            retain = splits["retain"]
            if shots:
                retain = kind.train.subset(torch.as_tensor(few_shot(labels, remaining, shots, seed)))
            in_task = torch.isin(kind.train.y, torch.as_tensor(classes, device=kind.train.y.device))
            request_splits = {"forget": kind.train.where(in_task), "retain": retain}
            task_key = stable_hash({"classes": classes, "forgotten": sorted(gone), "shots": shots})
            steps.append(TaskStep(classes, group, oracle.model, oracle.seconds, request_splits, task_key))
        previous_oracle = original.model
        for step in steps:
            group = step.group
            group.original_eval = self.task_evaluation(original.model, group, None, original.model)
            group.oracle_eval = self.task_evaluation(step.oracle, group, models.oracle_choice, previous_oracle)
            group.original_scores = scoring.score(group.original_eval)
            group.oracle_scores = scoring.score(group.oracle_eval)
            previous_oracle = step.oracle
        last = steps[-1].group
        for t, step in enumerate(steps, 1):  # the reference rows carry every task's continual keys too
            last.original_scores.values.update(task_values(step.group.original_scores, t))
            last.oracle_scores.values.update(task_values(step.group.oracle_scores, t))
        last.steps = steps
        return last

    def stages(self, group: CellGroup) -> Iterator[tuple[str, CellGroup]]:
        """Every task's group, labelled "task t"."""
        for t, step in enumerate(group.steps, 1):
            yield f"task {t}", step.group

    def task_evaluation(
        self, model: nn.Module, group: CellGroup, choice: MethodChoice | None, start: nn.Module
    ) -> Evaluation:
        """`model` on a task's splits, with `start` (the model the task began from) as the task-start dependency."""
        evaluation = self.scoring.evaluation(model, group, choice)
        begin = self.scoring.evaluation(start, group, None)
        return dataclasses.replace(evaluation, resources={**evaluation.resources, "task-start": lambda: begin})

    def outcome(self, cell: Cell, group: CellGroup) -> Outcome:
        """Run the method task after task from the previous output; score it after every task."""
        models = self.models
        model, key = group.original, self.kind.original_key(cell.seed)
        seconds, infos, values = 0.0, [], {}
        scores: Scores | None = None
        for t, step in enumerate(group.steps, 1):
            if cell.method.name == ORACLE:  # the reference: retrained on the full data in every task
                output, took, info = step.oracle, step.oracle_seconds, {}
            else:
                track = Track(self.track_of(cell.method, cell.manifest))
                out = models.run_method(cell.method, model, key, step.forget_key, step.request_splits, cell.seed, track)
                output, took, info = out.model, out.seconds, out.info
                key = models.method_key(cell.method, key, step.forget_key, cell.seed)
            scores = self.scoring.score(self.task_evaluation(output, step.group, cell.method, model))
            values.update(task_values(scores, t))
            seconds += took
            infos.append(info)
            model = output
        assert scores is not None
        final = Scores({**scores.values, **values}, scores.info)
        return Outcome(final, seconds, cell.method.name == ORACLE, {"tasks": infos})


def task_values(scores: Scores, task: int) -> dict[str, float]:
    """The continual keys of one task's scores, suffixed `@<task>`."""
    return {f"{k}@{task}": v for k, v in scores.values.items() if k in TASK_KEYS}
