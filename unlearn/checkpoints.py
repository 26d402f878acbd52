"""Model weights in and out as safetensors: no pickle is ever loaded from disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from unlearn.atomic import atomic_write
from unlearn.errors import UserError


def save_weights(model: nn.Module, path: Path, metadata: dict[str, Any] | None = None) -> None:
    """Atomically write the model's state dict (on CPU) and JSON metadata to a safetensors file."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"unlearn": json.dumps(metadata or {}, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by `save_weights`: (state dict, metadata). Raises UserError if unreadable."""
    try:
        state = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("unlearn", "{}")
        return state, json.loads(raw)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors checkpoint ({exc})") from None


def load_weights_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model`, requiring exactly matching keys and shapes (never strict=False)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape of {k}: {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}")
        raise UserError(f"{source}: weights do not fit the model ({'; '.join(parts)})")
    model.load_state_dict(state, strict=True)
