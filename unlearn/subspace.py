"""Memorisation subspaces of a class-conditional DDPM (Chavhan et al., arXiv 2406.18566): Wanda masks.

The pieces, each usable alone (`subspace-prune` chains them; a script can compare the masks of two condition
sets with `iou`):

- `prunable_layers`: the layers scored, every `nn.Linear` and every 1×1 `nn.Conv2d` (groups 1): the layers whose
  weight is an (out, in) matrix applied to one input vector per position. In this UNet (no attention at 8×8)
  they are the resnets' 1×1 `conv_shortcut`s, their `time_emb_proj` linears and the time-embedding MLP's two
  linears; with attention (the CIFAR-10 preset), also its query, key, value and output projections.
- `column_norms`: ‖X_j‖ per layer and input column j (input channel of a 1×1 conv, over batch and positions) at
  each of the first DDIM steps, over the classifier-free guided ε evaluations (conditional and null halves, as
  the reference's pipeline batches them). As the reference, each row (one position's input vector) is scaled to
  unit L2 norm before the squares are summed.
- `wanda_mask`: per output row, the top ⌈skill_ratio · columns⌉ columns by the memorised score |W|·‖X_mem‖, kept
  only where it exceeds the normal score |W|·‖X_norm‖.
- `timestep_masks` / `memorisation_masks`: both sides sampled from the same seeded noise, a mask per step, and
  their union; `prune` zeroes the masked weights; `iou` compares two masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Masks = dict[str, Tensor]
"""Layer name -> bool tensor shaped like the layer's weight (True: pruned)."""

_CHANNEL_DIM: dict[type[nn.Module], int] = {nn.Linear: -1, nn.Conv2d: 1}
"""Where a scored layer's input holds its input columns."""


def _is_matrix_layer(module: nn.Module) -> bool:
    """A Linear, or a Conv2d that is a matrix applied at each position (1×1 kernel, one group)."""
    if isinstance(module, nn.Conv2d):
        return tuple(module.kernel_size) == (1, 1) and module.groups == 1
    return isinstance(module, nn.Linear)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear and 1×1 Conv2d of `model`, by module name."""
    return {name: m for name, m in model.named_modules() if _is_matrix_layer(m)}


def weight_matrix(module: nn.Module) -> Tensor:
    """The layer's weight as (out, in)."""
    return module.weight.reshape(module.weight.shape[0], -1)


def _input_rows(module: nn.Module, x: Tensor) -> Tensor:
    """The layer's input as (rows, in): one row per sample and position."""
    dim = next(d for cls, d in _CHANNEL_DIM.items() if isinstance(module, cls))
    x = x.movedim(dim, -1)
    return x.reshape(-1, x.shape[-1])


class _NormRecorder:
    """Forward hooks summing the squared unit-normalised input rows of each layer into the current step's slot."""

    def __init__(self, layers: dict[str, nn.Module]):
        self.layers = layers
        self.steps: list[dict[str, Tensor]] = []
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in layers.items()]

    def _hook(self, name: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            rows = F.normalize(_input_rows(module, inputs[0]).detach().double(), dim=1)
            step = self.steps[-1]
            step[name] = step.get(name, 0) + rows.square().sum(0).cpu()
        return record

    def close(self) -> list[dict[str, Tensor]]:
        for h in self.handles:
            h.remove()
        return [{name: total.sqrt() for name, total in step.items()} for step in self.steps]


@torch.no_grad()
def column_norms(
    model: nn.Module, conditions: Tensor, noise: Tensor, timesteps: int, sampler_steps: int, guidance: float
) -> list[dict[str, Tensor]]:
    """‖X_j‖ of every prunable layer at each of the first `timesteps` steps of DDIM (`sampler_steps` steps,
    guidance `guidance`, η = 0) sampling `conditions[i]` from `noise[i]`: one dict (layer -> (in,)) per step."""
    from unlearn.models.diffusion import ddim_scheduler

    scheduler = ddim_scheduler(sampler_steps)
    device = next(model.parameters()).device
    x, conditions = noise.to(device), conditions.to(device)
    was_training = model.training
    model.eval()
    recorder = _NormRecorder(prunable_layers(model))
    try:
        for t in scheduler.timesteps[:timesteps]:
            recorder.steps.append({})
            tt = torch.full((len(x),), int(t), dtype=torch.long, device=device)
            eps = model.guided(x, tt, conditions, guidance)
            x = scheduler.step(eps, int(t), x, eta=0.0).prev_sample
    finally:
        norms = recorder.close()
        model.train(was_training)
    return norms


def wanda_mask(weight: Tensor, memorised: Tensor, normal: Tensor, skill_ratio: float) -> Tensor:
    """Per row of `weight` (out, in): the top ⌈skill_ratio · in⌉ columns by |W|·‖X_mem‖ (`memorised`, shape (in,)),
    kept where |W|·‖X_mem‖ > |W|·‖X_norm‖ (`normal`). A bool mask shaped like `weight`."""
    w = weight.detach().abs().double().cpu()
    mem, nor = w * memorised.double(), w * normal.double()
    k = min(w.shape[1], math.ceil(skill_ratio * w.shape[1] - 1e-9))  # 0.07 · 100 is 7.000000000000001
    top = torch.zeros_like(w, dtype=torch.bool).scatter_(1, mem.topk(k, dim=1).indices, True)
    return top & (mem > nor)


def union(masks: Sequence[Masks]) -> Masks:
    """The element-wise OR of masks over the same layers."""
    out = {name: m.clone() for name, m in masks[0].items()}
    for step in masks[1:]:
        for name, m in step.items():
            out[name] |= m
    return out


@dataclass(frozen=True)
class MaskSettings:
    """What a memorisation mask depends on besides the model and the conditions. The defaults live in one place,
    `SubspacePruneHParams` (`SubspacePrune().settings()` gives them)."""

    skill_ratio: float
    timesteps: int
    sampler_steps: int
    guidance: float
    samples_per_condition: int


def paired_conditions(memorised: Tensor, normal: Tensor, samples_per_condition: int) -> tuple[Tensor, Tensor]:
    """Both condition lists cycled to the same length n = max(len) · samples_per_condition: trajectory i of each
    side starts from the same noise, and both sides sum as many rows (the reference pairs its memorised and
    normal prompts one to one, each generated from the same seed)."""
    n = max(len(memorised), len(normal)) * samples_per_condition
    index = torch.arange(n)
    return memorised[index % len(memorised)], normal[index % len(normal)]


def timestep_masks(
    model: nn.Module, memorised: Tensor, normal: Tensor, settings: MaskSettings, gen: torch.Generator
) -> list[Masks]:
    """One mask per DDIM step (the first `settings.timesteps`): memorised against normal conditions (long
    labels), both sides sampled from the same noise drawn from `gen` (CPU)."""
    mem, nor = paired_conditions(memorised, normal, settings.samples_per_condition)
    noise = torch.randn((len(mem), *model.image_shape), generator=gen)
    run = (settings.timesteps, settings.sampler_steps, settings.guidance)
    mem_norms, nor_norms = column_norms(model, mem, noise, *run), column_norms(model, nor, noise, *run)
    layers = prunable_layers(model)

    def mask(name: str, m: nn.Module, at_m: dict[str, Tensor], at_n: dict[str, Tensor]) -> Tensor:
        if name not in at_m:  # a layer the forward pass never calls: nothing to score
            return torch.zeros(m.weight.shape, dtype=torch.bool)
        return wanda_mask(weight_matrix(m), at_m[name], at_n[name], settings.skill_ratio).view(m.weight.shape)

    return [{name: mask(name, m, at_m, at_n) for name, m in layers.items()}
            for at_m, at_n in zip(mem_norms, nor_norms, strict=True)]


def memorisation_masks(
    model: nn.Module, memorised: Tensor, normal: Tensor, settings: MaskSettings, gen: torch.Generator
) -> Masks:
    """The union over the first timesteps of `timestep_masks`: the weights `subspace-prune` zeroes."""
    return union(timestep_masks(model, memorised, normal, settings, gen))


@torch.no_grad()
def prune(model: nn.Module, masks: Masks) -> None:
    """Zero the masked weights of `model` in place; nothing else changes."""
    layers = prunable_layers(model)
    for name, mask in masks.items():
        weight = layers[name].weight
        weight.masked_fill_(mask.to(weight.device), 0.0)


def iou(a: Masks, b: Masks) -> float:
    """|a ∩ b| / |a ∪ b| over all layers of two masks of the same model; 1.0 when both are empty (identical)."""
    if a.keys() != b.keys():
        raise ValueError("masks of different layers")
    inter = sum(int((a[n] & b[n]).sum()) for n in a)
    either = sum(int((a[n] | b[n]).sum()) for n in a)
    return inter / either if either else 1.0
