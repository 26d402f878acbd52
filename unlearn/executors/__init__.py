"""How a grid's cells run: in this process, in a pool of local worker processes, as Ray tasks or as SLURM jobs.

`base` holds what every executor shares (work units, their events, `run_unit` and the `Executor` base; its
docstring tells how units, workers and their deaths fit together), `worker` the protocol of executors whose
workers run elsewhere, and `serial`, `process`, `ray` and `slurm` one executor each. `EXECUTORS` names them
for `--executor`; an executor's module is imported when it is first used, so importing this package imports
neither torch nor Ray nor submitit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from unlearn.errors import UserError
from unlearn.executors.base import (
    MIN_CHUNK,
    CellDeferred,
    CellDone,
    Executor,
    ExecutorStats,
    GroupReady,
    UnitDone,
    UnitFailed,
    WorkUnit,
    died_record,
    run_unit,
    split_units,
)
from unlearn.executors.worker import Payload, WorkerContext, exit_reason, pack, unit_events, worker_grid
from unlearn.registry import did_you_mean

if TYPE_CHECKING:
    from unlearn.executors.process import ProcessExecutor
    from unlearn.executors.ray import RayExecutor
    from unlearn.executors.serial import SerialExecutor
    from unlearn.executors.slurm import SlurmExecutor

__all__ = [
    "EXECUTORS", "MIN_CHUNK", "CellDeferred", "CellDone", "Executor", "ExecutorStats", "GroupReady", "Payload",
    "ProcessExecutor", "RayExecutor", "SerialExecutor", "SlurmExecutor", "UnitDone", "UnitFailed", "WorkUnit",
    "WorkerContext", "died_record", "executor_class", "exit_reason", "make_executor", "pack",
    "run_unit", "split_units", "unit_events", "worker_grid",
]

EXECUTORS: dict[str, str] = {
    "serial": "unlearn.executors.serial:SerialExecutor",
    "process": "unlearn.executors.process:ProcessExecutor",
    "ray": "unlearn.executors.ray:RayExecutor",
    "slurm": "unlearn.executors.slurm:SlurmExecutor",
}
"""`--executor` NAME -> its class, as `module:Class` (imported by `executor_class`)."""


def executor_class(name: str) -> type[Executor]:
    """The class of the executor `name`, its module imported now; UserError for an unknown name."""
    path = EXECUTORS.get(name)
    if path is None:
        raise UserError(f"unknown executor {name!r}{did_you_mean(name, list(EXECUTORS))}; use {', '.join(EXECUTORS)}")
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def make_executor(
    name: str = "serial", jobs: int | None = None, address: str | None = None, options: dict[str, Any] | None = None
) -> Executor:
    """The executor `name` with its options checked; UserError for an unknown name or an option it does not take."""
    return executor_class(name)(jobs, address, options)


_CLASSES = {path.partition(":")[2]: name for name, path in EXECUTORS.items()}


def __getattr__(attr: str) -> Any:
    """`from unlearn.executors import RayExecutor` (or any executor class): its module imported on first use."""
    if attr in _CLASSES:
        return executor_class(_CLASSES[attr])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
