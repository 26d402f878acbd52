"""The process pool: local worker processes forked from a fork server (spawned where there is none)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from unlearn.device import cpu_count
from unlearn.executors.base import CellDone, ExecutorStats, UnitDone, WorkUnit, split_units
from unlearn.executors.worker import Payload, _Parallel, _pickled, _Running, exit_reason, pack, unit_events

if TYPE_CHECKING:
    from unlearn.harness.grid import Grid


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


PRELOAD = ["unlearn.harness.grid", "unlearn.harness.classification", "unlearn.harness.protocols.single",
           "unlearn.banks", "unlearn.executors.worker"]
"""What the fork server imports once for every worker: the grid, the classification kind and its banks (torch and
scikit-learn with them); a worker imports any other kind (generation: diffusers) when it first needs it."""


def _pool_context() -> Any:
    """Where workers come from: a fork server that has imported the harness once (each worker is then a fork of
    it, instead of a fresh interpreter importing torch, diffusers and scikit-learn: about 5 s on 2 busy cores), or
    spawn where there is no fork server (Windows). The parent itself is never forked: its torch threads and CUDA
    state would not survive it."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # no effect once the server runs, which then has them already
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
        self.workers = jobs or cpu_count()

    def describe(self) -> str:
        return f"a pool of {self.workers} worker processes"

    def run(self, grid: Grid, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
        from multiprocessing.connection import wait

        self.stats = ExecutorStats()
        queue = deque(split_units(list(units), self.workers))
        if not queue:
            return
        start = time.perf_counter()
        payload = pack(grid, str(grid.kind.device))
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
                    yield from self._drain(grid, w, queue, workers)
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

    def _drain(self, grid: Grid, w: _Worker, queue: deque[WorkUnit],
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
                failed, again = self._died(grid, w.running, exit_reason(w.process.exitcode))
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
