"""The worker protocol: what a worker needs to rebuild the Grid, how it runs a unit as events, and how the
parent handles those events and a worker's death (`_Parallel`, shared by the process pool, Ray and SLURM)."""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from unlearn.errors import UserError
from unlearn.executors.base import (
    CellDeferred,
    CellDone,
    Executor,
    GroupReady,
    UnitDone,
    UnitFailed,
    WorkUnit,
    died_record,
    run_unit,
)

if TYPE_CHECKING:
    from unlearn.harness.cells import GroupSummary
    from unlearn.harness.grid import Grid


@dataclass
class _Running:
    """A unit in a worker: whether its group is ready, which of its cells are done and which it left for the end."""

    unit: WorkUnit
    info: GroupSummary | None = None
    done: set[int] = field(default_factory=set)
    deferred: list[int] = field(default_factory=list)


class _Parallel(Executor):
    """What the process pool and Ray share: handling a worker's events, and its death."""

    worker = "worker"

    def _handle(self, running: _Running, event: Any) -> CellDone | None:
        """Apply one event of a running unit; return a finished cell, raise a unit's exception."""
        if isinstance(event, GroupReady):
            running.info = event.info
            self._count(event)
            self.stats.workers.add((event.node, event.pid))
            if event.setup_seconds:
                self.stats.setup.append(event.setup_seconds)
        elif isinstance(event, CellDone):
            running.done.add(event.position)
            self._count(event)
            return event
        elif isinstance(event, CellDeferred):
            running.deferred.append(event.position)
        elif isinstance(event, UnitFailed):
            raise _exception(event)
        return None

    def _died(self, grid: Grid, running: _Running, reason: str) -> tuple[list[CellDone], WorkUnit | None]:
        """Failed records (written) for a dead worker's unit, and the unit of its cells that should run again."""
        from unlearn.results import write_record

        self.stats.deaths += 1
        unit = running.unit
        cells = dict(zip(unit.positions, unit.cells, strict=True))
        order = [p for p in unit.positions if p not in running.deferred] + running.deferred  # as the worker runs them
        left = [(p, cells[p]) for p in order if p not in running.done]
        if not left:
            return [], None
        if running.info is None and not unit.setup_died:  # no cell had started: the whole unit runs again
            failed, rest, unit = [], left, replace(unit, setup_died=True)
        elif running.info is None:
            error = (f"{self.worker} died twice before the cell's group was ready (original model and oracle loaded "
                     f"or trained, and scored): {reason}")
            failed, rest = [(p, died_record(grid, c, None, error)) for p, c in left], []
        else:
            (p, c), rest = left[0], left[1:]
            failed = [(p, died_record(grid, c, running.info, f"{self.worker} died while running this cell: {reason}"))]
        for position, record in failed:
            write_record(cells[position].path, record)
        again = replace(unit, cells=tuple(c for _, c in rest), positions=tuple(p for p, _ in rest)) if rest else None
        return [CellDone(position, record, 0.0) for position, record in failed], again


def _exception(event: UnitFailed) -> BaseException:
    """The worker's exception as the parent raises it (with the worker's traceback as a note when it has notes)."""
    try:
        exc = pickle.loads(event.error) if event.error is not None else None
    except Exception:  # an exception class the parent cannot rebuild
        exc = None
    if not isinstance(exc, BaseException):
        return RuntimeError(f"a worker failed outside any cell:\n{event.text}")
    if not isinstance(exc, UserError) and hasattr(exc, "add_note"):
        exc.add_note(f"in a worker:\n{event.text}")
    return exc


@dataclass(frozen=True)
class WorkerContext:
    """Everything a worker needs to rebuild the parent's kind and Grid (their classes are pickled by reference, so a
    plugin's kind, or a Grid subclass, is imported from its module in the worker)."""

    grid_cls: type
    kind_cls: type
    plan: Any
    workspace: Any
    device: str
    threads: int
    retry_failed: bool = False


@dataclass(frozen=True)
class Payload:
    """A pickled WorkerContext and the parent's sys.path, so that `module:Class` methods import in the worker."""

    blob: bytes
    sys_path: tuple[str, ...]


def pack(grid: Grid, device: str) -> Payload:
    """The Payload of `grid` for workers that run on `device`; UserError when the grid does not pickle."""
    import torch

    context = WorkerContext(type(grid), type(grid.kind), grid.plan, grid.workspace, device,
                            torch.get_num_threads(), grid.retry_failed)
    try:
        blob = pickle.dumps(context)
    except Exception as exc:
        raise UserError(f"the grid cannot be sent to worker processes ({exc}); methods must be importable classes, "
                        "or use --executor serial") from None
    return Payload(blob, tuple(sys.path))


def _pickled(obj: Any, what: str) -> bytes:
    try:
        return pickle.dumps(obj)
    except Exception as exc:
        raise UserError(f"{what} cannot be sent to worker processes ({exc}); use --executor serial") from None


_GRIDS: dict[bytes, Grid] = {}
"""The worker's Grid, kept across units of the same grid (the dataset loads once per worker)."""


def worker_grid(payload: Payload) -> tuple[Grid, float]:
    """The Grid a payload describes, built on first use in this worker; and the seconds that took (0 if reused)."""
    key = hashlib.sha256(payload.blob).digest()
    if key in _GRIDS:
        return _GRIDS[key], 0.0
    start = time.perf_counter()
    for entry in payload.sys_path:  # as multiprocessing's spawn does; the worker's own entries keep precedence
        if entry not in sys.path and (entry == "" or os.path.isdir(entry)):
            sys.path.append(entry)
    context: WorkerContext = pickle.loads(payload.blob)
    import torch

    from unlearn.device import configure_threads, limit_thread_pools

    device = torch.device(context.device)
    configure_threads(device, context.threads)
    if device.type != "cpu":  # a GPU worker's CPU-side metrics still share the node's cores
        limit_thread_pools(context.threads)
    spec, workspace = context.plan.spec, context.workspace
    kind = context.kind_cls.load(spec, workspace, device)
    grid = context.grid_cls(context.plan, kind, workspace, retry_failed=context.retry_failed)
    _GRIDS.clear()
    _GRIDS[key] = grid
    return grid, time.perf_counter() - start


def unit_events(
    payload: Payload, unit_blob: bytes, node: str | None = None
) -> Iterator[GroupReady | CellDone | UnitFailed | UnitDone]:
    """A worker's run of one pickled unit as events; an exception outside the cells ends it as UnitFailed."""
    try:
        grid, setup = worker_grid(payload)
        unit: WorkUnit = pickle.loads(unit_blob)
        for event in run_unit(grid, unit):
            yield replace(event, node=node, setup_seconds=setup) if isinstance(event, GroupReady) else event
    except Exception as exc:
        try:
            error: bytes | None = pickle.dumps(exc)
        except Exception:
            error = None
        yield UnitFailed(error, traceback.format_exc())
        return
    yield UnitDone()


def exit_reason(code: int | None) -> str:
    """A worker process's exit code in words."""
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
