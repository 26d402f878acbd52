"""Banks of models trained with one recipe at many seeds (the oracle bank behind per-example metrics).

A bank member with seed s is, by definition, exactly
`train_with_recipe(blueprint.build(s, device=device), data, recipe, s)`: initialised from
`Blueprint.build(s)`, batches shuffled by `generator(s, "train-batches")`, the recipe's SGD and
per-epoch schedule, cross-entropy, the recipe's augmentation drawing from the same generator.
`train_models` trains a bank three ways:

- "sequential": that call in a loop.
- "process": the same call in a pool of spawned CPU workers with one torch thread each. Members are
  bit-identical to sequential ones when the parent also runs torch with one thread (as the CLI does on
  CPU for the digits benchmark); with several intra-op threads some kernels may round differently.
- "vmap": every member at once with torch.func (stack_module_state, functional_call, vmap(grad)) and SGD
  written functionally to match torch.optim.SGD. Each member keeps its own initialisation, batch order
  and augmentation stream, but batched kernels round differently from per-model ones, so members are
  numerically close to sequential ones, not bit-identical. Models with BatchNorm running statistics,
  dropout or recurrent layers are refused (see `vmap_unsupported_reason`); vmap's code is in
  `unlearn.bank_vmap`.

`mode="auto"` times a few optimiser steps each way on the model and device at hand and picks the
fastest (the process pool's start-up is estimated, not measured). On 2 CPU cores at the digits scale
vmap does not pay off (one thread already runs these small matrix products near its peak): 64 MLPs
took 19 s each way, 64 small CNNs 65 s sequential and 83 s with vmap; the pool of 2 was 1.2-1.3x
faster on a busy machine. vmap is for GPUs, where one model leaves most of the device idle.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.bank_vmap import (
    VMAP_CPU_CHUNK,
    VMAP_MEMORY_BUDGET,
    StackedSGD,
    train_vmap,
    vmap_chunk_size,
    vmap_supported,
    vmap_unsupported_reason,
)
from unlearn.data.tensors import TensorData
from unlearn.device import cpu_count
from unlearn.errors import UserError
from unlearn.models.base import MODELS, Blueprint
from unlearn.progress import progress_bar
from unlearn.spec import Recipe
from unlearn.train import recipe_optimizer, train_with_recipe

__all__ = [  # the bank's API, vmap's part re-exported from unlearn.bank_vmap
    "MODES", "PROCESS_STARTUP_SECONDS", "VMAP_CPU_CHUNK", "VMAP_MEMORY_BUDGET", "BankTraining", "choose_mode",
    "train_models", "vmap_supported", "vmap_unsupported_reason",
]

MODES = ("sequential", "vmap", "process")

PROCESS_STARTUP_SECONDS = 4.0
"""Estimated pool overhead: spawned workers import torch and unlearn (about 3 s) and shut down (about 1 s)."""

_CALIBRATION_SECONDS = 0.2
"""How long `choose_mode` times each mode (after one warm-up step), at least 2 and at most 20 steps."""


@dataclass
class BankTraining:
    """A trained bank: models in the order of `seeds`, how they were trained and how long it took."""

    models: list[nn.Module]
    mode: str
    seconds: float
    """Wall time of the whole `train_models` call, calibration included."""
    seeds: list[int] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    """With mode "auto": per-model seconds per optimiser step of each candidate mode (process: estimated)."""
    calibration_seconds: float = 0.0
    """The part of `seconds` spent timing the candidate modes."""
    chunk_size: int | None = None
    """vmap: how many models trained together."""
    workers: list[dict[str, Any]] = field(default_factory=list)
    """process: what each worker process saw (pid, OMP_WAIT_POLICY, torch threads)."""


def train_models(
    blueprint: Blueprint,
    data: TensorData,
    recipe: Recipe,
    seeds: Sequence[int],
    *,
    mode: str = "auto",
    device: torch.device | str = "cpu",
    jobs: int = 2,
    progress: str | None = None,
    chunk_size: int | None = None,
) -> BankTraining:
    """Train one model per seed on `data` with `recipe`, each exactly the member `train_with_recipe` defines.

    `mode` is one of MODES or "auto" (time a few steps each way and pick the fastest). `jobs` is the
    process pool's size; `chunk_size` is how many models vmap trains together (default: as many as fit
    in memory, at most VMAP_CPU_CHUNK on CPU). `progress` labels a progress bar over models (over epochs for vmap).
    """
    seed_list = _check_seeds(seeds)
    device = torch.device(device)
    if mode not in (*MODES, "auto"):
        raise UserError(f"unknown bank training mode {mode!r}; use auto, {', '.join(MODES)}")
    if jobs < 1:
        raise UserError(f"jobs must be at least 1, not {jobs}")
    if chunk_size is not None and chunk_size < 1:
        raise UserError(f"chunk_size must be at least 1, not {chunk_size}")
    if mode == "process" and device.type != "cpu":
        raise UserError(f"process mode trains on CPU only, not on {device}; use sequential or vmap there")
    start = time.perf_counter()
    data = data.to(device)
    result = BankTraining(models=[], mode=mode, seconds=0.0, seeds=seed_list)
    if mode == "auto":
        result.mode, result.step_seconds = choose_mode(blueprint, data, recipe, len(seed_list), device, jobs)
        result.calibration_seconds = time.perf_counter() - start
    if result.mode == "sequential":
        bar = progress_bar(seed_list, desc=progress, leave=False, disable=progress is None)
        result.models = [train_with_recipe(blueprint.build(s, device=device), data, recipe, s) for s in bar]
        bar.close()
    elif result.mode == "process":
        result.models, result.workers = _train_process(blueprint, data, recipe, seed_list, jobs, progress)
    else:
        result.models, result.chunk_size = train_vmap(blueprint, data, recipe, seed_list, device, chunk_size, progress)
    result.seconds = time.perf_counter() - start
    return result


def choose_mode(
    blueprint: Blueprint, data: TensorData, recipe: Recipe, n: int, device: torch.device | str, jobs: int
) -> tuple[str, dict[str, float]]:
    """Time a few optimiser steps each way on this model and device; return the fastest mode and the timings.

    The timings are per-model seconds per optimiser step. "sequential" is one model's step at the
    current thread count; "vmap" (only when `vmap_supported`) is a step of min(n, chunk) stacked models
    divided by their number; "process" (CPU, at least 2 workers) is a one-thread step divided by the
    speed-up the workers get over one process (`_pool_speedup`, which counts other processes by the
    1-minute load average), plus PROCESS_STARTUP_SECONDS spread over the n models' steps. It is
    estimated, not measured, because starting a pool alone would take longer than all the rest.
    """
    device = torch.device(device)
    data = data.to(device)
    bs = min(recipe.batch_size, len(data))
    steps = recipe.epochs * math.ceil(len(data) / recipe.batch_size)
    x, y = data.x[:bs], data.y[:bs]
    model = blueprint.build(0, "bank-calibration", device=device)
    timings = {"sequential": _time_sequential_step(model, x, y, recipe)}
    if vmap_supported(model):
        k = min(n, vmap_chunk_size(model, x, device))
        with contextlib.suppress(RuntimeError):  # an operation vmap cannot batch: leave vmap out of the choice
            timings["vmap"] = _time_vmap_step(blueprint, x, y, recipe, k, device) / k
    workers = min(jobs, n, cpu_count())
    if device.type == "cpu" and workers >= 2:
        parallel = _pool_speedup(workers, cpu_count(), _others_load())
        one_thread = timings["sequential"]
        if torch.get_num_threads() != 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                one_thread = _time_sequential_step(model, x, y, recipe)
            finally:
                torch.set_num_threads(threads)
        timings["process"] = one_thread / parallel + PROCESS_STARTUP_SECONDS / (n * steps)
    return min(timings, key=lambda m: timings[m]), timings


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds as a list; UserError when there are none or some repeat."""
    seed_list = [int(s) for s in seeds]
    if not seed_list:
        raise UserError("a model bank needs at least one seed")
    repeated = sorted({s for s in seed_list if seed_list.count(s) > 1})
    if repeated:
        raise UserError(f"bank seeds must be distinct; repeated: {', '.join(map(str, repeated))}")
    return seed_list


def _others_load() -> float:
    """Runnable processes other than this one, by the 1-minute load average (0 where there is none)."""
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):  # not on Unix
        return 0.0


def _pool_speedup(workers: int, cpus: int, others: float) -> float:
    """How much faster `workers` one-thread processes run than one, beside `others` busy processes.

    A fair-share scheduler gives each of k + others runnable processes min(1, cpus / (k + others)) of a
    CPU, so k processes get k * min(1, cpus / (k + others)) CPUs: 2 workers on 2 idle CPUs are 2x one
    process, and still about 1.4x beside 1.5 other busy processes.
    """

    def cpus_for(k: int) -> float:
        return k * min(1.0, cpus / (k + others))

    return cpus_for(workers) / cpus_for(1)


def _sync(device: torch.device) -> None:
    """Wait for queued CUDA work so that timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_steps(step: Callable[[], None], device: torch.device) -> float:
    """Seconds per call of `step` after one warm-up call, timed for about _CALIBRATION_SECONDS."""
    step()
    _sync(device)
    count, start = 0, time.perf_counter()
    while count < 2 or (count < 20 and time.perf_counter() - start < _CALIBRATION_SECONDS):
        step()
        _sync(device)
        count += 1
    return (time.perf_counter() - start) / count


def _time_sequential_step(model: nn.Module, x: Tensor, y: Tensor, recipe: Recipe) -> float:
    """Seconds per optimiser step of the recipe's SGD on one model (the model's weights change)."""
    optimizer, _ = recipe_optimizer(model.parameters(), recipe)
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _timed_steps(step, x.device)


def _time_vmap_step(blueprint: Blueprint, x: Tensor, y: Tensor, recipe: Recipe, k: int, device: torch.device) -> float:
    """Seconds per vmapped optimiser step of k stacked models."""
    models = [blueprint.build(i, "bank-calibration", device=device) for i in range(k)]
    trainer = StackedSGD(models, recipe, x, y)
    xs, ys = x.expand(k, *x.shape), y.expand(k, *y.shape)
    return _timed_steps(lambda: trainer.step(xs, ys, recipe.lr), device)


_WORKER: dict[str, Any] = {}
"""A process-pool worker's blueprint, data and recipe, set once by `_worker_init`."""


def _to_bytes(obj: Any) -> bytes:
    """torch.save `obj` into bytes (tensors travel by value: no shared-memory file descriptors)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _from_bytes(payload: bytes) -> Any:
    """The object `_to_bytes` saved."""
    return torch.load(io.BytesIO(payload), weights_only=True)


def _worker_init(blueprint: Blueprint, data_path: str, recipe: Recipe, factory_module: str) -> None:
    """Set up a spawned worker: one torch thread, the model's factory registered, the data and recipe.

    OMP_WAIT_POLICY reaches the worker through the environment it inherits (and importing `unlearn`
    sets it before torch loads); each result reports what the worker saw. `factory_module` is imported
    because a fresh interpreter only knows the models `unlearn.models` imports (not, say, a plugin's).
    The data comes from a file: through the initializer's arguments it would fill the pipe the parent
    writes each new worker's start-up data to, and the parent would start one worker at a time.
    """
    torch.set_num_threads(1)
    if factory_module not in ("__main__", "__mp_main__"):  # spawn re-imports the parent's main module itself
        importlib.import_module(factory_module)
    x, y, index = torch.load(data_path, weights_only=True)
    _WORKER.update(blueprint=blueprint, data=TensorData(x, y, index), recipe=recipe)


def _worker_train(seed: int) -> tuple[bytes, dict[str, Any]]:
    """Train the member of `seed` in a worker; return its state_dict as bytes and what the worker saw."""
    model = train_with_recipe(_WORKER["blueprint"].build(seed), _WORKER["data"], _WORKER["recipe"], seed)
    seen = {"pid": os.getpid(), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "threads": torch.get_num_threads()}
    return _to_bytes(model.state_dict()), seen


def _train_process(
    blueprint: Blueprint, data: TensorData, recipe: Recipe, seeds: list[int], jobs: int, progress: str | None
) -> tuple[list[nn.Module], list[dict[str, Any]]]:
    """Train the bank in a spawned process pool of `jobs` one-thread workers; models come back on the CPU."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spawned workers inherit the environment
    factory_module = MODELS.get(blueprint.model).__module__
    states: list[bytes | None] = [None] * len(seeds)
    seen: dict[int, dict[str, Any]] = {}
    bar = progress_bar(total=len(seeds), desc=progress, leave=False, disable=progress is None)
    context = multiprocessing.get_context("spawn")
    workers = min(jobs, len(seeds))
    with tempfile.TemporaryDirectory(prefix="unlearn-bank-") as tmp:
        data_path = os.path.join(tmp, "data.pt")
        torch.save((data.x.cpu(), data.y.cpu(), data.index.cpu()), data_path)
        init_args = (blueprint, data_path, recipe, factory_module)
        with ProcessPoolExecutor(workers, context, initializer=_worker_init, initargs=init_args) as pool:
            pending: dict[Future, int] = {pool.submit(_worker_train, s): i for i, s in enumerate(seeds)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    position = pending.pop(future)
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()  # type: ignore[misc]
                    states[position], info = future.result()
                    seen[info["pid"]] = info
                    bar.update(1)
    bar.close()
    models = []
    for seed, state in zip(seeds, states, strict=True):
        model = blueprint.build(seed)
        model.load_state_dict(_from_bytes(state))  # type: ignore[arg-type]
        models.append(model)
    return models, sorted(seen.values(), key=lambda info: info["pid"])
