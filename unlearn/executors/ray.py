"""Ray: one Ray task per unit, on a cluster or on a local instance started for the run."""

from __future__ import annotations

import importlib.util
import socket
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from unlearn.device import cpu_count
from unlearn.errors import UserError
from unlearn.executors.base import CellDone, ExecutorStats, WorkUnit, split_units
from unlearn.executors.worker import Payload, _Parallel, _pickled, _Running, pack, unit_events

if TYPE_CHECKING:
    from unlearn.harness.grid import Grid


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
    takes_address = True
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
        return f"Ray tasks on a local instance of {self.jobs or cpu_count()} CPUs"

    def _connect(self, ray: Any) -> bool:
        """Connect to the cluster or start a local instance, unless Ray is already initialised; True if we did."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"include_dashboard": False}
        try:
            if self.address is not None:
                ray.init(address=self.address, **options)
            else:
                ray.init(address="local", num_cpus=self.jobs or cpu_count(), **options)
        except Exception as exc:  # an unreachable address, a cluster without our token, a clash of versions
            where = f"connect to the Ray cluster at {self.address}" if self.address else "start a local Ray instance"
            raise UserError(f"cannot {where}: {type(exc).__name__}: {(str(exc) or '?').splitlines()[0]}") from None
        return True

    def run(self, grid: Grid, units: Iterable[WorkUnit]) -> Iterator[CellDone]:
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
            device = grid.kind.device
            gpu = device.type == "cuda"
            # Ray hides all but the task's GPU, which is then cuda:0 in the worker
            payload = ray.put(pack(grid, "cuda" if gpu else str(device)))
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
                    failed, again = self._died(grid, running, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
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
