"""How a grid's cells run: in this process, in a pool of local worker processes, as Ray tasks or as SLURM jobs.

`Runner.run` hands an executor `WorkUnit`s: the unfinished cells of one (forget set, seed) group, which
share the group's setup (splits, original model and oracle loaded or trained, both scored). Every executor
runs a unit through the same function, `run_unit`: set the group up once, then execute its cells in grid
order, each written atomically as its record. Serial runs it here; the process pool, Ray and SLURM (through
submitit) run it in workers that rebuild the Task and Runner from picklable inputs (the plan, the workspace,
the device and torch's thread count) and write their records into the same results directory, the parent
collecting them in grid order. A group is the unit, not a cell, because its setup costs about one and a half cells on
digits (3 s against 2 s per cell with cached models on a busy 2-core machine), so per-cell units would
redo it for every cell; a group is split into chunks only when whole groups would leave workers idle.

Runs may share a workdir: each cell runs under its own lock (`unlearn.claims`, next to its record), held from
before its method starts until its record is written. A cell whose lock another run holds is left for the
end of the unit, then waited for, and the record that run wrote is reused (reported as reused, not run),
so two runs of one grid compute each cell once between them.

A cell that raises is a failed record (`Runner.execute`). A worker that dies is one too: the first
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

import contextlib
import hashlib
import importlib.util
import math
import multiprocessing
import os
import pickle
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from unlearn.errors import UserError
from unlearn.registry import did_you_mean

if TYPE_CHECKING:
    from unlearn.forget import ForgetManifest, ForgetSpec
    from unlearn.harness import Cell, CellGroup, Runner
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

    info: dict[str, Any]
    seconds: float
    pid: int = 0
    """The worker: its process id, its node (Ray's node id, a SLURM job's host), and what building its Runner took
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
    """Per worker: importing unlearn and torch, loading the dataset, building the Runner."""
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


def group_info(group: CellGroup) -> dict[str, Any]:
    """What `Runner.execute` copies from the group into every record: the original's and oracles' scores, model keys."""
    return {
        "oracle_metrics": group.oracle_metrics,
        "original_metrics": group.original_metrics,
        "ideal_oracle_metrics": group.ideal_oracle_scores.values if group.ideal_oracle_scores else None,
        "models": {"original": group.original_key, "oracle": group.oracle_key,
                   **({"ideal_oracle": group.ideal_oracle_key} if group.ideal_oracle_key else {})},
    }


def run_unit(runner: Runner, unit: WorkUnit) -> Iterator[GroupReady | CellDone | CellDeferred]:
    """Set the unit's group up once, then run its cells in order, each under its lock (`unlearn.claims`), writing each
    record: every executor's code path. A cell another run holds is left for the end of the unit, then waited for."""
    from unlearn.claims import claim

    start = time.perf_counter()
    derived = runner.for_forget(unit.forget, unit.seed)
    group = derived.group(unit.forget, unit.manifest, unit.seed)
    yield GroupReady(group_info(group), time.perf_counter() - start, os.getpid())
    busy = []
    for position, cell in zip(unit.positions, unit.cells, strict=True):
        start = time.perf_counter()
        claimed = claim(derived, group, cell, wait=False)
        if claimed is None:
            busy.append((position, cell))
            yield CellDeferred(position)
        else:
            yield CellDone(position, claimed[0], time.perf_counter() - start, claimed[1])
    for position, cell in busy:
        start = time.perf_counter()
        record, reused = claim(derived, group, cell, wait=True)  # type: ignore[misc]  # waiting, never None
        yield CellDone(position, record, time.perf_counter() - start, reused)


def died_record(runner: Runner, cell: Cell, info: dict[str, Any] | None, error: str) -> ResultRecord:
    """The failed record of a cell whose worker died (what `Runner.execute` writes for a cell that raised)."""
    from unlearn.results import ForgetInfo, ResultRecord

    info = info or {}
    return ResultRecord(
        status="failed",
        error=error,
        traceback=None,
        benchmark=runner.spec.name,
        method=cell.method.name,
        method_origin=cell.method.origin,
        hparams=cell.config["hparams"],
        track=cell.config["track"],
        forget=ForgetInfo(spec=cell.forget.text, sha256=cell.manifest.sha256, size=cell.manifest.size,
                          forgotten_classes=cell.manifest.forgotten_classes),
        seed=cell.seed,
        config=cell.config,
        config_hash=cell.config_hash,
        oracle_metrics=info.get("oracle_metrics", {}),
        original_metrics=info.get("original_metrics", {}),
        ideal_oracle_metrics=info.get("ideal_oracle_metrics"),
        models=info.get("models", {}),
        metrics={},
        gaps={},
        run_time_s=None,
        env=runner.env,
    )


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


# -- the executors -------------------------------------------------------------------------------


class Executor:
    """Runs a grid's work units and yields a `CellDone` for each cell as its record is written."""

    name = ""

    def __init__(self, jobs: int | None = None, address: str | None = None, options: dict[str, Any] | None = None):
        if jobs is not None and jobs < 1:
            raise UserError(f"--jobs must be at least 1, not {jobs}")
        if address is not None and type(self) is not RayExecutor:
            raise UserError(f"--address names a Ray cluster; use it with --executor ray, not {self.name}")
        if options and type(self) is not SlurmExecutor:
            raise UserError(f"--slurm sets options of SLURM jobs; use it with --executor slurm, not {self.name}")
        self.jobs = jobs
        self.address = address
        self.options = dict(options or {})
        self.stats = ExecutorStats()

    def describe(self) -> str:
        """How cells run, for the run's first line."""
        raise NotImplementedError

    def run(self, runner: Runner, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
        raise NotImplementedError

    def _count(self, event: Any) -> None:
        if isinstance(event, GroupReady):
            self.stats.groups.append(event.seconds)
        elif isinstance(event, CellDone) and not event.reused:
            self.stats.cells.append(event.seconds)


class SerialExecutor(Executor):
    """One cell after another in this process (the default)."""

    name = "serial"

    def __init__(self, jobs: int | None = None, address: str | None = None, options: dict[str, Any] | None = None):
        super().__init__(jobs, address, options)
        if jobs not in (None, 1):
            raise UserError("--jobs sets the workers of --executor process or ray; serial runs one cell at a time")

    def describe(self) -> str:
        return "serial"

    def run(self, runner: Runner, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
        self.stats = ExecutorStats(workers={(None, os.getpid())})
        for unit in units:  # consumed lazily: each group's cells are listed just before they run, as they always were
            self.stats.units += 1
            for event in run_unit(runner, unit):
                self._count(event)
                if isinstance(event, CellDone):
                    yield event


@dataclass
class _Running:
    """A unit in a worker: whether its group is ready, which of its cells are done and which it left for the end."""

    unit: WorkUnit
    info: dict[str, Any] | None = None
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

    def _died(self, runner: Runner, running: _Running, reason: str) -> tuple[list[CellDone], WorkUnit | None]:
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
            failed, rest = [(p, died_record(runner, c, None, error)) for p, c in left], []
        else:
            (p, c), rest = left[0], left[1:]
            failed = [(p, died_record(runner, c, running.info, f"{self.worker} died while running this cell: {reason}"))]
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


# -- the worker side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerContext:
    """Everything a worker needs to rebuild the parent's Task and Runner."""

    runner_cls: type
    task_cls: type
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


def pack(runner: Runner, device: str) -> Payload:
    """The Payload of `runner` for workers that run on `device`; UserError when the grid does not pickle."""
    import torch

    context = WorkerContext(type(runner), type(runner.task), runner.plan, runner.workspace, device,
                            torch.get_num_threads(), runner.retry_failed)
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


_RUNNERS: dict[bytes, Runner] = {}
"""The worker's Runner, kept across units of the same grid (the dataset loads once per worker)."""


def worker_runner(payload: Payload) -> tuple[Runner, float]:
    """The Runner a payload describes, built on first use in this worker; and the seconds that took (0 if reused)."""
    key = hashlib.sha256(payload.blob).digest()
    if key in _RUNNERS:
        return _RUNNERS[key], 0.0
    start = time.perf_counter()
    for entry in payload.sys_path:  # as multiprocessing's spawn does; the worker's own entries keep precedence
        if entry not in sys.path and (entry == "" or os.path.isdir(entry)):
            sys.path.append(entry)
    context: WorkerContext = pickle.loads(payload.blob)
    import torch

    from unlearn.data import load_dataset
    from unlearn.device import configure_threads, limit_thread_pools

    device = torch.device(context.device)
    configure_threads(device, context.threads)
    if device.type != "cpu":  # a GPU worker's CPU-side metrics still share the node's cores
        limit_thread_pools(context.threads)
    spec, workspace = context.plan.spec, context.workspace
    task = context.task_cls(spec, load_dataset(spec.dataset, workspace.data_root, workspace.download), device)
    runner = context.runner_cls(context.plan, task, workspace, retry_failed=context.retry_failed)
    _RUNNERS.clear()
    _RUNNERS[key] = runner
    return runner, time.perf_counter() - start


def unit_events(
    payload: Payload, unit_blob: bytes, node: str | None = None
) -> Iterator[GroupReady | CellDone | UnitFailed | UnitDone]:
    """A worker's run of one pickled unit as events; an exception outside the cells ends it as UnitFailed."""
    try:
        runner, setup = worker_runner(payload)
        unit: WorkUnit = pickle.loads(unit_blob)
        for event in run_unit(runner, unit):
            yield replace(event, node=node, setup_seconds=setup) if isinstance(event, GroupReady) else event
    except Exception as exc:
        try:
            error: bytes | None = pickle.dumps(exc)
        except Exception:
            error = None
        yield UnitFailed(error, traceback.format_exc())
        return
    yield UnitDone()


def _process_main(payload: Payload, conn: Any) -> None:
    """A pool worker: run the units the parent sends until it sends an empty message or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the workers

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds, so an atomic write in progress removes its temporary file

    signal.signal(signal.SIGTERM, stop)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            unit_blob = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not unit_blob:
            return
        for event in unit_events(payload, unit_blob):
            conn.send(event)


# -- the process pool ------------------------------------------------------------------------------


def _cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def _pool_context() -> Any:
    """Where workers come from: a fork server that has imported the harness once (each worker is then a fork of
    it, instead of a fresh interpreter importing torch, diffusers and scikit-learn: about 5 s on 2 busy cores), or
    spawn where there is no fork server (Windows). The parent itself is never forked: its torch threads and CUDA
    state would not survive it."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["unlearn.harness"])  # no effect once the server runs, which then has it already
    return context


class _Worker:
    """One spawned worker process and the parent's end of its pipe."""

    def __init__(self, context: Any, payload: Payload, number: int):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_process_main, args=(payload, child), name=f"unlearn-worker-{number}")
        self.started = time.perf_counter()
        self.process.start()
        child.close()
        self.running: _Running | None = None
        self.spawn_seconds: float | None = None


class ProcessExecutor(_Parallel):
    """A pool of `jobs` spawned local worker processes (default: one per available CPU)."""

    name = "process"
    worker = "worker process"

    def __init__(self, jobs: int | None = None, address: str | None = None, options: dict[str, Any] | None = None):
        super().__init__(jobs, address, options)
        self.workers = jobs or _cpu_count()

    def describe(self) -> str:
        return f"a pool of {self.workers} worker processes"

    def run(self, runner: Runner, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
        from multiprocessing.connection import wait

        self.stats = ExecutorStats()
        queue = deque(split_units(list(units), self.workers))
        if not queue:
            return
        start = time.perf_counter()
        payload = pack(runner, str(runner.task.device))
        context = _pool_context()
        workers: list[_Worker] = []
        started = 0
        try:
            while queue or any(w.running for w in workers):
                for w in list(workers):
                    if w.running is None and queue:
                        self._assign(w, queue, workers)
                while queue and len(workers) < self.workers:
                    w = _Worker(context, payload, started)
                    started += 1
                    workers.append(w)
                    self._assign(w, queue, workers)
                if not self.stats.startup:
                    self.stats.startup = time.perf_counter() - start
                busy = [w for w in workers if w.running is not None]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for w in busy:
                    yield from self._drain(runner, w, queue, workers)
        finally:
            _stop(workers)

    def _assign(self, w: _Worker, queue: deque[WorkUnit], workers: list[_Worker]) -> None:
        unit = queue.popleft()
        try:
            w.conn.send_bytes(_pickled(unit, "a work unit"))
        except OSError:  # the worker died while idle: the unit goes to another one
            queue.appendleft(unit)
            workers.remove(w)
            w.process.join(timeout=5)
            return
        w.running = _Running(unit)
        self.stats.units += 1

    def _drain(self, runner: Runner, w: _Worker, queue: deque[WorkUnit],
               workers: list[_Worker]) -> Iterator[CellDone]:
        """Handle every message the worker has sent; on its death, record the failure and requeue the rest."""
        while w.running is not None:
            try:
                if not w.conn.poll():
                    if w.process.is_alive():
                        return
                    raise EOFError
                event = w.conn.recv()
            except (EOFError, OSError):
                w.process.join(timeout=10)
                failed, again = self._died(runner, w.running, exit_reason(w.process.exitcode))
                workers.remove(w)
                w.conn.close()
                w.running = None
                if again is not None:
                    queue.appendleft(again)
                yield from failed
                return
            if isinstance(event, tuple):  # ("ready", pid): the interpreter and unlearn.executors are up
                self.stats.spawn.append(time.perf_counter() - w.started)
                continue
            running = w.running
            if isinstance(event, UnitDone):
                w.running = None
            done = self._handle(running, event)
            if done is not None:
                yield done


def _stop(workers: list[_Worker]) -> None:
    """End the pool: idle workers are asked to exit, busy ones (after an error or Ctrl-C) are terminated."""
    for w in workers:
        try:
            if w.running is None:
                w.conn.send_bytes(b"")
            else:
                w.process.terminate()
        except OSError:
            pass
    deadline = time.monotonic() + 10
    for w in workers:
        w.process.join(timeout=max(0.1, deadline - time.monotonic()))
        if w.process.is_alive():
            w.process.kill()
            w.process.join(timeout=5)
        w.conn.close()


# -- Ray ---------------------------------------------------------------------------------------------


def _ray_unit(payload: Payload, unit_blob: bytes) -> Iterator[Any]:
    """A Ray task (a streaming generator): one unit's events, as `unit_events` gives them."""
    import ray

    yield from unit_events(payload, unit_blob, ray.get_runtime_context().get_node_id())


def _check_reachable(address: str) -> None:
    """UserError when nothing answers at a HOST:PORT address (Ray itself would retry for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or "/" in address or not port.isdigit():
        return  # ray://..., auto: Ray's to resolve
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"nothing answers at --address {address} ({exc.strerror or exc}); start the cluster with "
                        "`ray start --head` and pass the address it prints") from None


class RayExecutor(_Parallel):
    """Ray tasks, one per unit, each declaring 1 CPU (and 1 GPU on CUDA), on the cluster at `address` or on a local
    instance of `jobs` CPUs (default: all) started for the run."""

    name = "ray"
    worker = "Ray worker"

    def __init__(self, jobs: int | None = None, address: str | None = None, options: dict[str, Any] | None = None):
        super().__init__(jobs, address, options)
        if importlib.util.find_spec("ray") is None:
            raise UserError('--executor ray needs Ray: pip install -e ".[ray]" (or pip install "ray>=2.9")')
        if jobs is not None and address is not None:
            raise UserError("--jobs sets the CPUs of a local Ray instance; with --address the cluster's resources decide")
        if address is not None:
            _check_reachable(address)  # before anything is loaded or written

    def describe(self) -> str:
        if self.address is not None:
            return f"Ray tasks on the cluster at {self.address}"
        return f"Ray tasks on a local instance of {self.jobs or _cpu_count()} CPUs"

    def _connect(self, ray: Any) -> bool:
        """Connect to the cluster or start a local instance, unless Ray is already initialised; True if we did."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"include_dashboard": False}
        try:
            if self.address is not None:
                ray.init(address=self.address, **options)
            else:
                ray.init(address="local", num_cpus=self.jobs or _cpu_count(), **options)
        except Exception as exc:  # an unreachable address, a cluster without our token, a clash of versions
            where = f"connect to the Ray cluster at {self.address}" if self.address else "start a local Ray instance"
            raise UserError(f"cannot {where}: {type(exc).__name__}: {(str(exc) or '?').splitlines()[0]}") from None
        return True

    def run(self, runner: Runner, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
        self.stats = ExecutorStats()
        units = list(units)
        if not units:
            return
        try:
            import ray
        except ImportError as exc:
            raise UserError(f"--executor ray: Ray does not import ({exc}); reinstall it: pip install \"ray>=2.9\"") from None
        start = time.perf_counter()
        started = self._connect(ray)
        try:
            device = runner.task.device
            gpu = device.type == "cuda"
            # Ray hides all but the task's GPU, which is then cuda:0 in the worker
            payload = ray.put(pack(runner, "cuda" if gpu else str(device)))
            slots = int(ray.cluster_resources().get("GPU" if gpu else "CPU", 1)) or 1
            remote = ray.remote(_ray_unit).options(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=0)
            pending: dict[Any, _Running] = {}

            def submit(unit: WorkUnit) -> None:
                pending[remote.remote(payload, _pickled(unit, "a work unit"))] = _Running(unit)
                self.stats.units += 1

            for unit in split_units(units, slots):
                submit(unit)
            self.stats.startup = time.perf_counter() - start
            while pending:
                [stream], _ = ray.wait(list(pending), num_returns=1)
                running = pending[stream]
                try:
                    event = ray.get(next(stream))
                except StopIteration:
                    del pending[stream]
                    continue
                except ray.exceptions.RayError as exc:  # the worker (or its node) died: the task's stream broke
                    del pending[stream]
                    failed, again = self._died(runner, running, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                    if again is not None:
                        submit(again)
                    yield from failed
                    continue
                done = self._handle(running, event)
                if done is not None:
                    yield done
        finally:
            if started:
                ray.shutdown()


# -- SLURM (submitit) --------------------------------------------------------------------------------


def _slurm_unit(payload: Payload, unit_blob: bytes) -> list[Any]:
    """A SLURM job: one unit's events, returned when it ends (submitit pickles them into the job's folder)."""
    return list(unit_events(payload, unit_blob, socket.gethostname()))


def _stamp(path: Path) -> tuple[int, int] | None:
    """(inode, mtime in ns) of a file, None if there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class SlurmExecutor(_Parallel):
    """SLURM jobs through submitit, one per unit, at most `jobs` at a time (default: all of them).

    Each job asks for one task with the run's CPU threads (and one GPU on CUDA), under `--slurm KEY=VALUE`
    options passed to submitit's `update_parameters` (`slurm_partition=gpu`, `timeout_min=600`, `mem_gb=16`,
    `slurm_account=...`); `cluster=local` runs the same jobs as local processes, without SLURM. The workdir
    must be on a file system the nodes share: jobs write their records there, and submitit keeps its job
    files and logs in `<results dir>/../slurm-jobs/`. A job returns its events when it ends; a job that dies
    (killed, timed out, its node lost) keeps the records it wrote, fails the cell it was running and leaves
    the rest to a new job, as a dead worker of the pool does.
    """

    name = "slurm"
    worker = "SLURM job"
    poll_seconds = 1.0

    def __init__(self, jobs: int | None = None, address: str | None = None, options: dict[str, Any] | None = None):
        super().__init__(jobs, address, options)
        if importlib.util.find_spec("submitit") is None:
            raise UserError('--executor slurm needs submitit: pip install -e ".[slurm]" (or pip install submitit)')
        self.cluster = self.options.pop("cluster", "slurm")
        if self.cluster not in ("slurm", "local"):
            raise UserError(f"--slurm cluster={self.cluster}: use slurm (the default) or local")
        with tempfile.TemporaryDirectory() as folder:  # every option checked before anything runs or is written
            self._executor(Path(folder), "check", gpu=False, threads=1)

    def describe(self) -> str:
        where = "local processes through submitit" if self.cluster == "local" else "SLURM jobs through submitit"
        return f"{where}, {self.jobs or 'all'} at a time"

    def _executor(self, folder: Path, name: str, gpu: bool, threads: int) -> Any:
        """A submitit executor with the jobs' resources; UserError for an option submitit does not know, or for
        SLURM where there is none."""
        import submitit

        try:
            executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        except RuntimeError as exc:  # no srun here
            raise UserError(f"--executor slurm: {str(exc).splitlines()[0]} (--slurm cluster=local runs the jobs as "
                            "local processes)") from None
        parameters = {"name": name, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": threads,
                      "gpus_per_node": 1 if gpu else 0, **self.options}
        try:
            executor.update_parameters(**parameters)
        except (NameError, ValueError, TypeError) as exc:
            raise UserError(f"--slurm: {str(exc).splitlines()[0]}") from None
        return executor

    def run(self, runner: Runner, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
        self.stats = ExecutorStats()
        queue = deque(split_units(list(units), self.jobs or 1))
        if not queue:
            return
        import torch

        start = time.perf_counter()
        device = runner.task.device
        executor = self._executor(runner.workspace.results_dir.parent / "slurm-jobs", f"unlearn-{runner.spec.name}",
                                  gpu=device.type == "cuda", threads=torch.get_num_threads())  # as pack() records
        payload = pack(runner, "cuda" if device.type == "cuda" else str(device))  # SLURM shows the job its GPU only
        pending: dict[Any, tuple[_Running, dict[int, tuple[int, int] | None]]] = {}
        try:
            while queue or pending:
                while queue and len(pending) < (self.jobs or len(queue) + len(pending)):
                    unit = queue.popleft()
                    before = {p: _stamp(c.path) for p, c in zip(unit.positions, unit.cells, strict=True)}
                    pending[executor.submit(_slurm_unit, payload, _pickled(unit, "a work unit"))] = (_Running(unit), before)
                    self.stats.units += 1
                if not self.stats.startup:
                    self.stats.startup = time.perf_counter() - start
                finished = [job for job in pending if job.done()]
                if not finished:
                    time.sleep(self.poll_seconds)
                for job in finished:
                    running, before = pending.pop(job)
                    try:
                        events = job.result()
                    except Exception as exc:  # killed, timed out, node lost, or nothing returned
                        reason = f"job {job.job_id}: {type(exc).__name__}: {(str(exc) or '?').splitlines()[0]}"
                        yield from self._job_died(runner, running, before, reason, queue)
                        continue
                    for event in events:
                        done = self._handle(running, event)
                        if done is not None:
                            yield done
        finally:
            for job in pending:
                with contextlib.suppress(Exception):
                    job.cancel(check=False)

    def _job_died(self, runner: Runner, running: _Running, before: dict[int, tuple[int, int] | None], reason: str,
                  queue: deque[WorkUnit]) -> Iterator[CellDone]:
        """The records a dead job wrote (files new since it was submitted: records are renamed into place, so a
        rewritten one is a new file), then what `_died` makes of the rest."""
        from unlearn.results import InvalidRecord, read_record

        unit = running.unit
        for position, cell in zip(unit.positions, unit.cells, strict=True):
            try:
                if _stamp(cell.path) in (None, before[position]):
                    continue
                record = read_record(cell.path)
            except (OSError, InvalidRecord):
                continue
            running.done.add(position)
            running.info = running.info or {key: getattr(record, key) for key in
                                            ("oracle_metrics", "original_metrics", "ideal_oracle_metrics", "models")}
            yield CellDone(position, record, 0.0)
        failed, again = self._died(runner, running, reason)
        if again is not None:
            queue.appendleft(again)
        yield from failed


EXECUTORS: dict[str, type[Executor]] = {"serial": SerialExecutor, "process": ProcessExecutor, "ray": RayExecutor,
                                         "slurm": SlurmExecutor}
"""`--executor` NAME -> its class."""


def make_executor(
    name: str = "serial", jobs: int | None = None, address: str | None = None, options: dict[str, Any] | None = None
) -> Executor:
    """The executor `name` with its options checked; UserError for an unknown name or an option it does not take."""
    cls = EXECUTORS.get(name)
    if cls is None:
        raise UserError(f"unknown executor {name!r}{did_you_mean(name, list(EXECUTORS))}; use {', '.join(EXECUTORS)}")
    return cls(jobs, address, options)
