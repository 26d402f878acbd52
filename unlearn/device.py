"""Resolve `--device auto|cpu|cuda[:N]|mps` to a torch.device."""

from __future__ import annotations

import torch

from unlearn.errors import UserError


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


def configure_threads(device: torch.device, threads: int | None) -> None:
    """On CPU, set torch's intra-op thread count (None leaves torch's default)."""
    if device.type == "cpu" and threads is not None:
        torch.set_num_threads(threads)
