"""SLURM: one job per unit through submitit (or local processes with `--slurm cluster=local`)."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn.errors import UserError
from unlearn.executors.base import CellDone, ExecutorStats, WorkUnit, split_units
from unlearn.executors.worker import Payload, _Parallel, _pickled, _Running, pack, unit_events

if TYPE_CHECKING:
    from unlearn.harness.grid import Grid


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
    takes_options = True
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

    def run(self, grid: Grid, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
        self.stats = ExecutorStats()
        queue = deque(split_units(list(units), self.jobs or 1))
        if not queue:
            return
        import torch

        start = time.perf_counter()
        device = grid.kind.device
        executor = self._executor(grid.workspace.results_dir.parent / "slurm-jobs", f"unlearn-{grid.spec.name}",
                                  gpu=device.type == "cuda", threads=torch.get_num_threads())  # as pack() records
        payload = pack(grid, "cuda" if device.type == "cuda" else str(device))  # SLURM shows the job its GPU only
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
                        yield from self._job_died(grid, running, before, reason, queue)
                        continue
                    for event in events:
                        done = self._handle(running, event)
                        if done is not None:
                            yield done
        finally:
            for job in pending:
                with contextlib.suppress(Exception):
                    job.cancel(check=False)

    def _job_died(self, grid: Grid, running: _Running, before: dict[int, tuple[int, int] | None], reason: str,
                  queue: deque[WorkUnit]) -> Iterator[CellDone]:
        """The records a dead job wrote (files new since it was submitted: records are renamed into place, so a
        rewritten one is a new file), then what `_died` makes of the rest."""
        from unlearn.harness.cells import GroupSummary
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
            running.info = running.info or GroupSummary.of_record(record)
            yield CellDone(position, record, 0.0)
        failed, again = self._died(grid, running, reason)
        if again is not None:
            queue.appendleft(again)
        yield from failed
