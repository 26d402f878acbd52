"""Task forget sets of the language kind: `task:NAME[:n=N]` forgets N of task NAME's training items.

The N items are drawn from the task's training items with a generator seeded by the cell seed (so each seed
forgets its own N); N defaults to 1000, the paper's larger forget set ("Unforgettable Generalization in Language
Models" also runs 100). The cell's other splits follow from the task (`unlearn.language.kind`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn.data.base import Dataset
from unlearn.errors import UserError
from unlearn.forget.base import BuildContext, BuiltSet, ForgetBuilder
from unlearn.language.tasks import TASKS
from unlearn.registry import did_you_mean

DEFAULT_N = 1000


class TaskForget(ForgetBuilder):
    """task:NAME[:n=N] — N (default 1000) seeded training items of the tasks-lm task NAME (language benchmarks)."""

    syntax = "task:NAME[:n=N] (a tasks-lm task, N of its training items)"

    def parse(self, arg: str) -> dict[str, Any]:
        name, *options = arg.split(":")
        known = TASKS.names()
        if name not in known:
            raise UserError(f"unknown task {name!r} in 'task:{arg}'{did_you_mean(name, known)}; "
                            f"the tasks are {', '.join(known)}")
        n = DEFAULT_N
        for option in options:
            key, sep, value = option.partition("=")
            if key != "n" or not sep:
                raise UserError(f"malformed forget spec 'task:{arg}': write {self.syntax}")
            try:
                n = int(value)
            except ValueError:
                raise UserError(f"forget spec 'task:{arg}': n must be a whole number, not {value!r}") from None
            if n < 1:
                raise UserError(f"forget spec 'task:{arg}': n must be positive")
        return {"task": name, "n": n}

    def canonical(self, params: dict[str, Any]) -> str:
        return f"{params['task']}:n={params['n']}"

    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        tasks = getattr(dataset, "tasks", None)
        if not isinstance(tasks, dict) or "train" not in tasks:
            raise UserError(f"task:{self.canonical(params)} forgets a task of a language benchmark; "
                            f"{dataset.name} has no tasks")
        dataset.check_task(params["task"])  # type: ignore[attr-defined]
        have = sum(name == params["task"] for name in tasks["train"])
        if params["n"] > have:
            raise UserError(f"task:{self.canonical(params)} asks for {params['n']} forget items, but task "
                            f"{params['task']!r} has {have} training items")

    def build(self, params: dict[str, Any], context: BuildContext) -> BuiltSet:
        from unlearn.seeding import derive_seed

        rows = np.flatnonzero([name == params["task"] for name in context.dataset.tasks["train"]])  # type: ignore[attr-defined]
        rng = np.random.default_rng(derive_seed(context.seed, "forget", "task", params["task"]))
        chosen = np.sort(rng.choice(rows, size=params["n"], replace=False)).astype(np.int64)
        return BuiltSet(chosen, provenance={"task": params["task"], "n": params["n"]})
