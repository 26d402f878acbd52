"""Continual forget sets: a sequence of class-forgetting tasks, optionally with few-shot retain data.

`continual:3x2` forgets 3 tasks of 2 classes each, in a class order drawn from the seed;
`continual:1+7/3+5` names the tasks (classes joined by `+`, tasks by `/`). `:shots=4`
gives every method only 4 training samples of each remaining class (the few-shot track of
GS-LoRA; the forget data stay whole). The manifest holds every sample of every task's
classes, the tasks in order and the shots; `unlearn.harness.protocols.continual` runs the
sequence: each task unlearns from the previous task's output, and the oracle of task t is
retrained on the full data without every class forgotten so far.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn.data.base import Dataset
from unlearn.data.manipulations import parse_number
from unlearn.errors import UserError
from unlearn.forget.base import BUILDERS, BuildContext, BuiltSet, ForgetBuilder
from unlearn.forget.corrective import split_options
from unlearn.hashing import hash_order


@BUILDERS.register("continual")
class ContinualForget(ForgetBuilder):
    """continual:TxK or continual:A+B/C+D [:shots=S] — a sequence of class-forgetting tasks."""

    syntax = "continual:TxK or continual:A+B/C+D (tasks of classes), optionally :shots=S (few-shot retain)"
    extra_metrics = ("continual",)
    provides = ("task-start",)
    protocol = "continual"

    def parse(self, arg: str) -> dict[str, Any]:
        where = f"continual:{arg}"
        positional, options = split_options(arg.split(":"), where)
        if len(positional) != 1 or set(options) - {"shots"}:
            raise UserError(f"malformed forget spec {where!r}: write {self.syntax}")
        shots = parse_number(options["shots"], "shots", int) if "shots" in options else None
        if shots is not None and shots < 1:
            raise UserError(f"{where}: shots must be at least 1")
        text = positional[0]
        if "x" in text:
            count, _, size = text.partition("x")
            params: dict[str, Any] = {"tasks": parse_number(count, "the number of tasks", int),
                                      "classes": parse_number(size, "classes per task", int)}
            if params["tasks"] < 1 or params["classes"] < 1:
                raise UserError(f"{where}: need at least one task of at least one class")
        else:
            tasks = [[parse_number(c, "a class", int) for c in task.split("+")] for task in text.split("/")]
            seen: dict[int, int] = {}
            for t, task in enumerate(tasks, 1):
                for c in task:
                    if c in seen:
                        raise UserError(f"{where}: class {c} is in task {seen[c]} and task {t}; tasks must not overlap")
                    seen[c] = t
            params = {"order": tasks}
        return {**params, "shots": shots}

    def canonical(self, params: dict[str, Any]) -> str:
        head = ("/".join("+".join(str(c) for c in task) for task in params["order"]) if "order" in params
                else f"{params['tasks']}x{params['classes']}")
        return head + (f":shots={params['shots']}" if params["shots"] is not None else "")

    def tasks(self, params: dict[str, Any], num_classes: int, seed: int) -> list[list[int]]:
        """The classes of each task: as named, or the first T·K classes of an order drawn from the seed."""
        if "order" in params:
            return [list(task) for task in params["order"]]
        order = hash_order(range(num_classes), f"unlearn-continual-v1:{seed}").tolist()
        k = params["classes"]
        return [order[i * k : (i + 1) * k] for i in range(params["tasks"])]

    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        n = dataset.num_classes
        count = sum(len(t) for t in params["order"]) if "order" in params else params["tasks"] * params["classes"]
        if count >= n:
            raise UserError(f"continual:{self.canonical(params)} forgets {count} of {dataset.name}'s {n} classes; "
                            "at least one class must remain")
        labels = dataset.train.y.cpu().numpy()
        for task in params.get("order", []):
            for c in task:
                if not 0 <= c < n:
                    raise UserError(f"class {c} is not a label of {dataset.name} (labels are 0..{n - 1})")
        if params["shots"] is not None:
            fewest = int(np.bincount(labels, minlength=n).min())
            if params["shots"] > fewest:
                raise UserError(f"shots={params['shots']} exceeds the {fewest} training samples of "
                                f"{dataset.name}'s smallest class")

    def build(self, params: dict[str, Any], context: BuildContext) -> BuiltSet:
        tasks = self.tasks(params, context.dataset.num_classes, context.seed)
        gone = sorted(c for task in tasks for c in task)
        labels = context.dataset.train.y.cpu().numpy()
        indices = np.flatnonzero(np.isin(labels, gone)).astype(np.int64)
        return BuiltSet(indices, tuple(gone), {"tasks": tasks, "shots": params["shots"]})


def few_shot(labels: np.ndarray, classes: list[int], shots: int, seed: int) -> np.ndarray:
    """Sorted positions of `shots` training samples of each class in `classes`, drawn from the seed; a class
    keeps the same samples in every task."""
    chosen = [hash_order(np.flatnonzero(labels == c), f"unlearn-few-shot-v1:{seed}:{c}")[:shots] for c in classes]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)
