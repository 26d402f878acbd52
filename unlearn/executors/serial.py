"""The serial executor: every unit in this process, one cell after another."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from unlearn.errors import UserError
from unlearn.executors.base import CellDone, Executor, ExecutorStats, WorkUnit, run_unit

if TYPE_CHECKING:
    from unlearn.harness.grid import Grid


class SerialExecutor(Executor):
    """One cell after another in this process (the default)."""

    name = "serial"

    def __init__(self, jobs: int | None = None, address: str | None = None, options: dict[str, Any] | None = None):
        super().__init__(jobs, address, options)
        if jobs not in (None, 1):
            raise UserError("--jobs sets the workers of --executor process or ray; serial runs one cell at a time")

    def describe(self) -> str:
        return "serial"

    def run(self, grid: Grid, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
        self.stats = ExecutorStats(workers={(None, os.getpid())})
        for unit in units:  # consumed lazily: each group's cells are listed just before they run, as they always were
            self.stats.units += 1
            for event in run_unit(grid, unit):
                self._count(event)
                if isinstance(event, CellDone):
                    yield event
