"""Resolve `--device auto|cpu|cuda[:N]|mps` to a torch.device, count the CPUs this process may use, and size its
CPU thread pools."""

from __future__ import annotations

import os

import torch

from unlearn.errors import UserError
from unlearn.spec import MAX_THREADS


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device named by `name`; `auto` picks CUDA when present, CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} requested but MPS is not available; use --device cpu or auto")
    return device


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(device: torch.device, threads: int | None) -> None:
    """On CPU, give torch's intra-op pool and the BLAS/OpenMP pools `threads` threads (None leaves the defaults).

    The metrics' scikit-learn probes and attacks run on numpy/scipy's OpenBLAS and scikit-learn's OpenMP, so
    `--threads N` (or the spec's cpu_threads) sizes them too, in a serial run as in every pool or Ray worker.
    """
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UserError(f"threads must be between 1 and {MAX_THREADS}, got {threads}")
    if device.type == "cpu" and threads is not None:
        torch.set_num_threads(threads)
        limit_thread_pools(threads)


def limit_thread_pools(threads: int) -> None:
    """Give the BLAS and OpenMP pools (numpy's and scipy's OpenBLAS, scikit-learn's OpenMP) `threads` threads.

    Their default is one thread per core: two workers on 2 cores oversubscribe them, and their spinning threads
    made digits cells 3-4x slower in a pool of 2 (numbers unchanged). Libraries loaded already are limited through
    threadpoolctl, later ones (and child processes) by the environment.
    """
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it the environment still covers later loads
        return
    threadpool_limits(threads)
