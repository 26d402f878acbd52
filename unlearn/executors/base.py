"""What every executor shares: work units, the events a unit's run yields, `run_unit`, and the `Executor` base.

How a grid's cells run: in this process, in a pool of local worker processes, as Ray tasks or as SLURM jobs.

`Grid.run` hands an executor `WorkUnit`s: the unfinished cells of one (forget set, seed) group, which
share the group's setup (splits, original model and oracle loaded or trained, both scored). Every executor
runs a unit through the same function, `run_unit`: set the group up once, then execute its cells in grid
order, each written atomically as its record. Serial runs it here; the process pool, Ray and SLURM (through
submitit) run it in workers that rebuild the kind and the Grid from picklable inputs (the plan, the workspace,
the device and torch's thread count) and write their records into the same results directory, the parent
collecting them in grid order. A group is the unit, not a cell, because its setup costs about one and a half cells on
digits (3 s against 2 s per cell with cached models on a busy 2-core machine), so per-cell units would
redo it for every cell; a group is split into chunks only when whole groups would leave workers idle.

Runs may share a workdir: each cell runs under its own lock (`unlearn.claims`, next to its record), held from
before its method starts until its record is written. A cell whose lock another run holds is left for the
end of the unit, then waited for, and the record that run wrote is reused (reported as reused, not run),
so two runs of one grid compute each cell once between them.

A cell that raises is a failed record (`Grid.execute`). A worker that dies is one too: the first
unfinished cell of its unit, in the order the worker runs them (grid order, cells left for another run
last, each written before the next starts), is the one that was running, so it becomes a failed record
with the reason and the unit's remaining cells run again in a new worker. A worker that dies before its
group is ready has started no cell: its whole unit runs again in a new worker, once; a second such death
(a setup that always crashes) fails the unit's cells. A SLURM job returns its events only when it ends,
so one that dies before writing a record counts as dying in its setup. An exception outside any cell
(a user error, a full disk) stops the run as it does in serial.

Original models and oracles are built once even when workers need them together (`ModelCache` holds a
file lock while it builds), forget-set manifests are built by the parent before any fan-out, and every
file is written atomically, so concurrent readers see a whole file or none.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from unlearn.errors import UserError

if TYPE_CHECKING:
    from unlearn.forget import ForgetManifest, ForgetSpec
    from unlearn.harness.cells import Cell, GroupSummary
    from unlearn.harness.grid import Grid
    from unlearn.results import ResultRecord

MIN_CHUNK = 4
"""A group is split into chunks of at least this many cells: each chunk repeats the group's setup (about 1.5
cells' worth on digits), so smaller chunks would cost more than the idle workers they keep busy."""


@dataclass(frozen=True)
class WorkUnit:
    """Unfinished cells of one (forget set, seed) group, run in order after one setup of the group."""

    forget: ForgetSpec
    seed: int
    manifest: ForgetManifest
    cells: tuple[Cell, ...]
    positions: tuple[int, ...]
    """Each cell's index in the grid's order (`GridResult.records`)."""
    setup_died: bool = False
    """A worker died setting this unit's group up: it runs once more, and a second such death fails its cells."""

    def chunk(self, i: int, parts: int) -> WorkUnit:
        """Every `parts`-th cell from the i-th (a strided chunk spreads slow and fast methods)."""
        return replace(self, cells=self.cells[i::parts], positions=self.positions[i::parts])


@dataclass
class GroupReady:
    """Event: the unit's group is set up; `info` holds what a failed record of its cells carries."""

    info: GroupSummary
    seconds: float
    pid: int = 0
    """The worker: its process id, its node (Ray's node id, a SLURM job's host), and what building its Grid took
    (0 when it had one)."""
    node: str | None = None
    setup_seconds: float = 0.0


@dataclass
class CellDone:
    """Event: a cell's record is written (`reused`: by another run on the same workdir, while this one waited)."""

    position: int
    record: ResultRecord
    seconds: float
    reused: bool = False


@dataclass
class CellDeferred:
    """Event: another run holds the cell's lock; the worker comes back to it after the unit's other cells."""

    position: int


@dataclass
class UnitFailed:
    """Event: an exception outside any cell; the parent raises it again (as a serial run would have)."""

    error: bytes | None
    """The pickled exception, or None when it does not pickle."""
    text: str
    """Its formatted traceback in the worker."""


@dataclass
class UnitDone:
    """Event: a worker finished its unit."""


@dataclass
class ExecutorStats:
    """Where a run's time went, for `scripts/executor_speedup.py` (seconds; per-worker lists)."""

    startup: float = 0.0
    """Starting the pool or connecting to Ray, in the parent."""
    setup: list[float] = field(default_factory=list)
    """Per worker: importing unlearn and torch, loading the dataset, building the Grid."""
    spawn: list[float] = field(default_factory=list)
    """Per worker process: from starting it to its first message (interpreter start and imports)."""
    groups: list[float] = field(default_factory=list)
    """Per unit: setting up its group (original model and oracle loaded or trained, and scored)."""
    cells: list[float] = field(default_factory=list)
    """Per cell: the method's run, its scoring and writing the record."""
    units: int = 0
    deaths: int = 0
    workers: set[tuple[str | None, int]] = field(default_factory=set)
    """(node, process id) of each worker that ran units (the node: Ray's node id or a SLURM job's host name)."""

    def summary(self) -> str:
        """One line: units, workers (and nodes), deaths."""
        nodes = {node for node, _ in self.workers if node is not None}
        where = f"{len(self.workers)} workers" + (f" on {len(nodes)} node{'s' * (len(nodes) != 1)}" if nodes else "")
        died = f", {self.deaths} worker deaths" if self.deaths else ""
        return f"{self.units} units of work ran in {where}{died}"


def run_unit(grid: Grid, unit: WorkUnit) -> Iterator[GroupReady | CellDone | CellDeferred]:
    """Set the unit's group up once, then run its cells in order, each under its lock (`unlearn.claims`), writing each
    record: every executor's code path. A cell another run holds is left for the end of the unit, then waited for."""
    from unlearn.claims import claim

    start = time.perf_counter()
    protocol, group = grid.prepare_group(unit.forget, unit.manifest, unit.seed)
    yield GroupReady(group.summary(), time.perf_counter() - start, os.getpid())
    busy = []
    for position, cell in zip(unit.positions, unit.cells, strict=True):
        start = time.perf_counter()
        claimed = claim(grid, protocol, group, cell, wait=False)
        if claimed is None:
            busy.append((position, cell))
            yield CellDeferred(position)
        else:
            yield CellDone(position, claimed[0], time.perf_counter() - start, claimed[1])
    for position, cell in busy:
        start = time.perf_counter()
        record, reused = claim(grid, protocol, group, cell, wait=True)  # type: ignore[misc]  # waiting, never None
        yield CellDone(position, record, time.perf_counter() - start, reused)


def died_record(grid: Grid, cell: Cell, summary: GroupSummary | None, error: str) -> ResultRecord:
    """The failed record of a cell whose worker died (`summary`: None when its group was never ready)."""
    from unlearn.harness.cells import GroupSummary
    from unlearn.results import ResultRecord

    return ResultRecord.for_cell(cell, summary or GroupSummary(), grid.env, error=error)


def split_units(units: list[WorkUnit], workers: int, min_cells: int = MIN_CHUNK) -> list[WorkUnit]:
    """The units for `workers` parallel workers, split and ordered.

    Groups are split into chunks when whole groups would leave workers idle at the end (units not a multiple
    of workers): into workers / gcd(units, workers) chunks each, of at least `min_cells` cells. Then first
    chunks come before second ones, and within them units go forget set by forget set, each across the seeds
    (the grid lists them seed by seed): workers that start together on a cold cache then train different
    seeds' original models instead of waiting for the one they share.
    """
    if workers <= 1 or not units:
        return units
    parts = 1 if len(units) % workers == 0 else workers // math.gcd(len(units), workers)
    chunks: list[tuple[int, WorkUnit]] = []
    for unit in units:
        k = max(1, min(parts, len(unit.cells) // min_cells))
        chunks.extend((i, unit.chunk(i, k)) for i in range(k))
    forgets = list(dict.fromkeys(unit.forget.text for unit in units))
    seeds = list(dict.fromkeys(unit.seed for unit in units))
    chunks.sort(key=lambda c: (c[0], forgets.index(c[1].forget.text), seeds.index(c[1].seed)))
    return [unit for _, unit in chunks]


class Executor:
    """Runs a grid's work units and yields a `CellDone` for each cell as its record is written."""

    name = ""
    takes_address: ClassVar[bool] = False
    """Whether it runs on a cluster named by `--address` (Ray)."""
    takes_options: ClassVar[bool] = False
    """Whether it takes `--slurm KEY=VALUE` options (SLURM)."""

    def __init__(self, jobs: int | None = None, address: str | None = None, options: dict[str, Any] | None = None):
        if jobs is not None and jobs < 1:
            raise UserError(f"--jobs must be at least 1, not {jobs}")
        if address is not None and not self.takes_address:
            raise UserError(f"--address names a Ray cluster; use it with --executor ray, not {self.name}")
        if options and not self.takes_options:
            raise UserError(f"--slurm sets options of SLURM jobs; use it with --executor slurm, not {self.name}")
        self.jobs = jobs
        self.address = address
        self.options = dict(options or {})
        self.stats = ExecutorStats()

    def describe(self) -> str:
        """How cells run, for the run's first line."""
        raise NotImplementedError

    def run(self, grid: Grid, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
        raise NotImplementedError

    def _count(self, event: Any) -> None:
        if isinstance(event, GroupReady):
            self.stats.groups.append(event.seconds)
        elif isinstance(event, CellDone) and not event.reused:
            self.stats.cells.append(event.seconds)
