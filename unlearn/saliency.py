"""Saliency masks (SalUn): the fraction of weights whose forget-loss gradient is largest, by magnitude.

The gradient source is a parameter, so that any track can build a mask with its own
loss: `SaliencyMask.compute(model, data, loss, ratio, batch_size)` sums the gradient of
`loss(model, x, y)` over the mini-batches of a `TensorData`, and
`SaliencyMask.from_gradients(grads, ratio)` ranks gradients computed elsewhere.

Reference: OPTML-Group/Unlearn-Saliency `Classification/generate_mask.py`. The model
is in eval mode; one pass over D_f with loss −CE (batch mean); the gradients of every
parameter are summed over the batches; |g| of all tensors is ranked globally and the
top int(γ·n) entries are kept (n: number of parameter entries). Differences:

- Ties in |g| are broken deterministically, in favour of the entry that comes first
  in parameter registration order (row-major within a tensor); the reference uses
  `torch.argsort`, whose order among equal values is unspecified. The count is the
  reference's, exactly int(γ·n).
- Batches are taken in data order; the reference shuffles the forget loader. The sum
  of batch means depends on the order only through the weight of the last, shorter
  batch.
- Masks are saved as safetensors (bool tensors plus JSON metadata), never pickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from unlearn.atomic import atomic_write
from unlearn.checkpoints import read_checkpoint, shape_mismatch
from unlearn.data.tensors import TensorData
from unlearn.errors import Diverged, UserError
from unlearn.gradients import summed_gradients, trainable
from unlearn.train import LossFn

_METADATA_KEY = "unlearn-saliency-mask"
_FORMAT = 1


@dataclass(frozen=True)
class MaskEntry:
    """One tensor's share of a mask, for inspection."""

    name: str
    shape: tuple[int, ...]
    kept: int
    total: int

    @property
    def fraction(self) -> float:
        """Kept entries over all entries of this tensor."""
        return self.kept / self.total if self.total else 0.0


@dataclass(frozen=True)
class SaliencyMask:
    """Parameter name -> bool tensor (True: the entry may change), with the ratio that built it."""

    masks: dict[str, Tensor]
    ratio: float
    metadata: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable facts about how the mask was made (loss, batch size, number of samples, ...)."""

    @classmethod
    def from_gradients(
        cls, grads: Mapping[str, Tensor], ratio: float, metadata: Mapping[str, Any] | None = None
    ) -> SaliencyMask:
        """Keep exactly int(ratio·n) entries: the largest |grad| over all tensors together.

        Ties are broken in favour of the earlier entry (tensors in `grads` order, row-major within each).
        """
        if not 0 < ratio <= 1:
            raise UserError(f"saliency mask ratio must be in (0, 1], got {ratio!r}")
        if not grads:
            raise UserError("saliency mask: no gradients given (the model has no trainable parameters)")
        flat = torch.cat([g.detach().abs().flatten() for g in grads.values()])
        if bool(torch.isnan(flat).any()):
            raise Diverged("saliency gradients are NaN")
        total = flat.numel()
        keep_count = int(total * ratio)
        if keep_count == 0:
            raise UserError(f"saliency mask ratio {ratio!r} keeps no entry of {total} parameters; raise the ratio")
        order = torch.sort(flat, descending=True, stable=True).indices
        keep = torch.zeros(total, dtype=torch.bool, device=flat.device)
        keep[order[:keep_count]] = True
        masks, start = {}, 0
        for name, g in grads.items():
            masks[name] = keep[start : start + g.numel()].view(g.shape).clone()
            start += g.numel()
        return cls(masks, float(ratio), dict(metadata or {}))

    @classmethod
    def compute(cls, model: nn.Module, data: TensorData, loss: LossFn, ratio: float, batch_size: int) -> SaliencyMask:
        """The mask of `model`'s trainable parameters from the gradient of `loss`, summed over batches of `data`.

        The model is in eval mode meanwhile (as the reference); every module's previous mode is restored.
        """
        if len(data) == 0:
            raise UserError("saliency mask: the data set is empty")
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            grads = summed_gradients(model, data, loss, batch_size)
        finally:
            for module, mode in modes:
                module.training = mode
        metadata = {
            "loss": getattr(loss, "__name__", type(loss).__name__),
            "batch_size": batch_size,
            "samples": len(data),
        }
        return cls.from_gradients(grads, ratio, metadata)

    def to(self, device: torch.device | str) -> SaliencyMask:
        """A copy with every tensor on `device`."""
        return SaliencyMask({k: v.to(device) for k, v in self.masks.items()}, self.ratio, dict(self.metadata))

    def check_fits(self, model: nn.Module, source: str = "saliency mask") -> None:
        """Raise UserError unless the mask has exactly the names and shapes of `model`'s trainable parameters."""
        problem = shape_mismatch(trainable(model), self.masks)
        if problem:
            raise UserError(f"{source}: does not fit the model ({problem}); compute it for this architecture")

    def apply_to_gradients(self, model: nn.Module) -> None:
        """Zero the `.grad` of every masked-out entry (SalUn's masked update)."""
        for name, p in model.named_parameters():
            if p.grad is not None and name in self.masks:
                p.grad.masked_fill_(~self.masks[name], 0)

    @torch.no_grad()
    def reset_masked_out(
        self, model: nn.Module, theta0: Mapping[str, Tensor], optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """Put every masked-out entry back to `theta0` and zero its momentum buffer (the SalUn mask fix).

        Called after each optimiser step, it keeps masked-out weights bit-identical to θ0
        although weight decay and momentum would otherwise move them.
        """
        for name, p in model.named_parameters():
            if name not in self.masks:
                continue
            mask = self.masks[name]
            p.copy_(torch.where(mask, p, theta0[name]))
            state = optimizer.state.get(p) if optimizer is not None else None
            buffer = state.get("momentum_buffer") if state else None
            if buffer is not None:
                buffer.masked_fill_(~mask, 0)

    def kept(self) -> int:
        """Number of kept (True) entries."""
        return sum(int(m.sum()) for m in self.masks.values())

    def total(self) -> int:
        """Number of entries covered by the mask."""
        return sum(m.numel() for m in self.masks.values())

    def kept_fraction(self) -> float:
        """Kept entries over all entries."""
        return self.kept() / self.total()

    def summary(self) -> list[MaskEntry]:
        """Per tensor: name, shape, kept entries, total entries (and `.fraction`), in parameter order."""
        return [MaskEntry(name, tuple(m.shape), int(m.sum()), m.numel()) for name, m in self.masks.items()]

    def save(self, path: Path | str) -> None:
        """Atomically write the mask as safetensors (bool tensors on CPU) with its ratio and metadata."""
        path = Path(path)
        tensors = {k: v.detach().to("cpu", torch.bool).contiguous() for k, v in self.masks.items()}
        info = {"format": _FORMAT, "ratio": self.ratio, "names": list(self.masks), "metadata": self.metadata}
        meta = {_METADATA_KEY: json.dumps(info, sort_keys=True)}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: Path | str) -> SaliencyMask:
        """Read a mask written by `save` (on CPU). Never unpickles; raises UserError on any other file.

        A safetensors file of 0/1 tensors without our metadata (e.g. a converted reference
        mask) is accepted too; its ratio is then its kept fraction.
        """
        path = Path(path)
        tensors = read_checkpoint(path)  # refuses pickles, checks the safetensors header
        try:
            with safe_open(str(path), framework="pt") as fh:
                raw = (fh.metadata() or {}).get(_METADATA_KEY)
        except (SafetensorError, OSError) as exc:
            raise UserError(f"{path}: not a readable saliency mask ({exc})") from None
        if not tensors:
            raise UserError(f"{path}: holds no tensors, so it is not a saliency mask")
        masks = {}
        for name, t in tensors.items():
            if t.dtype != torch.bool:
                if t.is_complex() or not bool(((t == 0) | (t == 1)).all()):
                    raise UserError(f"{path}: tensor {name!r} is not a 0/1 mask")
                t = t != 0
            masks[name] = t
        if raw is None:
            kept = sum(int(m.sum()) for m in masks.values())
            total = sum(m.numel() for m in masks.values())
            return cls(masks, kept / total, {"imported": True})
        try:
            info = json.loads(raw)
            ratio, metadata, names = float(info["ratio"]), dict(info.get("metadata", {})), list(info["names"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}: malformed saliency mask metadata") from None
        if sorted(names) != sorted(masks):
            raise UserError(f"{path}: saliency mask metadata does not list its tensors")
        return cls({name: masks[name] for name in names}, ratio, metadata)  # safetensors sorts names; keep ours
