"""The continual layout: a table per forget sequence with Acc_f, Acc_r and H after every task, ranked by H after
the last task.

A continual cell (docs/continual.md) records its metrics after every task t as `<key>@t`, for the method, its
original model and its oracle alike. Its table shows, for each task in order, Acc_f@t, Acc_r@t and H@t (mean and
95 % interval over seeds, as every table), then run time or the columns asked for. It ranks by H after the last
task, higher is better: GS-LoRA's headline, the harmonic mean of forgetting the last task's classes and keeping
the rest. Bold marks the method closest to the oracle on Acc_f and Acc_r and the highest on H. The original model's
H is 0 (it forgets nothing), so "vs original" says whether a method's H is above doing nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from unlearn.leaderboard.tables import RUN_TIME, Layout, Table, register_layout
from unlearn.results import ResultRecord

CONTINUAL_METRIC = "continual"
"""The metric a continual cell's config lists (the harness adds it to every cell of a continual forget set)."""
TASK_COLUMNS = ("Acc_f", "Acc_r", "H")
"""The per-task keys a table shows, in this order within each task."""
_TASK_KEY = re.compile(r"(?P<key>.+)@(?P<task>[1-9][0-9]*)")

EXPLAIN = (
    "Acc_f@t: test accuracy (%) on the classes task t forgets, after task t (the oracle's is 0).",
    "Acc_r@t: test accuracy on the classes no task has forgotten yet, after task t.",
    "H@t: the harmonic mean of Acc_r@t and the drop in accuracy on task t's classes during task t "
    "(the model task t started from, minus Acc_f@t, floored at 0); higher is better, and a task that did nothing or "
    "raised Acc_f scores 0.",
    "Each task starts from the previous task's output; the records also hold Acc_o@t, the accuracy on the classes "
    "earlier tasks forgot (docs/continual.md).",
)


def task_count(records: Sequence[ResultRecord]) -> int:
    """The number of tasks: the highest t among the records' `<key>@t` keys (theirs, their originals', oracles')."""
    keys = (k for r in records for scores in (r.metrics, r.original_metrics, r.oracle_metrics) for k in scores)
    return max((int(m["task"]) for k in keys if (m := _TASK_KEY.fullmatch(k))), default=0)


@register_layout("continual")
class ContinualLayout(Layout):
    """Per-task columns of a continual forget sequence, ranked by H after the last task."""

    def claims(self, records: Sequence[ResultRecord]) -> bool:
        return bool(records) and all(CONTINUAL_METRIC in r.config.get("metrics", []) for r in records)

    def columns(self, records: Sequence[ResultRecord], benchmark_records: Sequence[ResultRecord],
                fixed: Sequence[str] | None) -> list[str]:
        """Acc_f@t, Acc_r@t and H@t for every task t, then `fixed` (default: run time) without the keys the
        records hold per task (their value after the last task is already shown as `<key>@T`)."""
        tasks = task_count(records)
        per_task = {k for r in records for k in r.metrics if _TASK_KEY.fullmatch(k)}
        after = [c for c in (fixed or [RUN_TIME]) if f"{c}@{tasks}" not in per_task]
        return [*(f"{key}@{t}" for t in range(1, tasks + 1) for key in TASK_COLUMNS), *after]

    def headline(self, shown: Sequence[str]) -> str | None:
        """H after the last task (None when no column shows an H)."""
        return next((c for c in reversed(shown) if self._key(c) == "H"), None)

    def direction(self, column: str) -> int:
        return 1 if self._key(column) == "H" else super().direction(column)

    def notes(self, table: Table) -> list[str]:
        out = []
        if table.headline is not None:
            out.append(f"Ranked by {table.headline}, H after the last task (higher is better; GS-LoRA's headline); "
                       "it does not see whether earlier tasks' classes stay forgotten.")
        return [*out, *EXPLAIN]

    @staticmethod
    def _key(column: str) -> str | None:
        match = _TASK_KEY.fullmatch(column)
        return match["key"] if match else None
