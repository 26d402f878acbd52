"""Training a bank's members together with torch.func: `train_models`'s "vmap" mode (see `unlearn.bank_training`).

Every member keeps its own initialisation, batch order and augmentation stream; SGD is written functionally
to match torch.optim.SGD. Models whose training vmap cannot reproduce are refused (`vmap_unsupported_reason`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from tqdm.auto import tqdm

from unlearn.data.tensors import TensorData
from unlearn.errors import Diverged, UserError
from unlearn.models.base import Blueprint
from unlearn.progress import progress_bar
from unlearn.seeding import generator as seeded_generator
from unlearn.spec import Recipe
from unlearn.train import AUGMENTATIONS, recipe_optimizer

VMAP_MEMORY_BUDGET = 1 << 30
"""Bytes one vmap chunk may use on CPU (on CUDA: half the free memory); larger banks train in chunks."""

VMAP_CPU_CHUNK = 16
"""At most this many models per vmap chunk on CPU: per-model step time is flat from 4 to 32 stacked models
and doubles at 64 for the digits CNN (1.9-2.4 ms at 4-32, 4.2 ms at 64; the MLP stays at 0.5-0.7 ms)."""


def vmap_supported(model: nn.Module) -> bool:
    """Whether the functional vmap step reproduces `train_with_recipe` for this model."""
    return vmap_unsupported_reason(model) is None


def vmap_unsupported_reason(model: nn.Module) -> str | None:
    """Why vmap cannot train `model` like `train_with_recipe` does, or None when it can."""
    for name, module in model.named_modules():
        where = f"{name or 'model'} ({type(module).__name__})"
        norm = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
        if isinstance(module, norm) and module.track_running_stats:
            return f"{where} updates BatchNorm-style running statistics in place, which vmap cannot do per model"
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"{where} draws dropout masks from the global RNG, which a vmapped step cannot reproduce"
        if isinstance(module, nn.RNNBase):
            return f"{where} is a recurrent layer, which torch.func's vmap does not batch"
    return None


def _epoch_lrs(recipe: Recipe) -> list[float]:
    """The learning rate of each epoch, read from the very optimiser and scheduler `train_with_recipe` uses."""
    probe = torch.zeros(1, requires_grad=True)
    optimizer, scheduler = recipe_optimizer([probe], recipe)
    lrs = []
    for _ in range(recipe.epochs):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        if scheduler is not None:
            optimizer.step()  # no gradient, so a no-op; it keeps the scheduler from warning
            scheduler.step()
    return lrs


def vmap_chunk_size(model: nn.Module, x: Tensor, device: torch.device) -> int:
    """How many copies of `model` one vmapped step on batch `x` can train within the memory budget."""
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    activation_bytes = [x.numel() * x.element_size()]

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            activation_bytes.append(output.numel() * output.element_size())

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    # weights, gradients, momentum and one temporary; activations kept for backward plus their gradients
    per_model = 4 * param_bytes + 3 * sum(activation_bytes)
    if device.type == "cuda":
        return max(1, torch.cuda.mem_get_info(device)[0] // 2 // per_model)
    return max(1, min(VMAP_CPU_CHUNK, VMAP_MEMORY_BUDGET // per_model))


class StackedSGD:
    """k models with identical architecture trained together: vmap(grad) of cross-entropy, then SGD.

    The update is torch.optim.SGD's (dampening 0, no Nesterov) written out on stacked tensors:
    d = g + weight_decay * p; the momentum buffer starts as d and then becomes momentum * buf + d;
    p -= lr * buf. Parameters that get no gradient in `train_with_recipe` (frozen, or unused by
    the forward pass) are skipped by torch's SGD, so they are held constant here too.
    """

    def __init__(self, models: Sequence[nn.Module], recipe: Recipe, x: Tensor, y: Tensor):
        self.momentum = recipe.momentum
        self.weight_decay = recipe.weight_decay
        trainable = _parameters_with_gradient(models[0], x, y)
        params, buffers = stack_module_state(list(models))
        self.params = {k: v.detach() for k, v in params.items() if k in trainable}
        self.consts = {k: v.detach() for k, v in params.items() if k not in trainable}
        self.consts.update({k: v.detach() for k, v in buffers.items()})
        self.momentum_buffers: dict[str, Tensor] = {}
        base = copy.deepcopy(models[0]).to("meta")
        base.train()

        def loss(p: dict[str, Tensor], c: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
            return F.cross_entropy(functional_call(base, (p, c), (xb,)), yb)

        self.grad_fn = vmap(grad_and_value(loss))

    def step(self, x: Tensor, y: Tensor, lr: float) -> Tensor:
        """One SGD step of every model on its own batch x[i], y[i]; returns the k losses."""
        grads, losses = self.grad_fn(self.params, self.consts, x, y)
        with torch.no_grad():
            for name, param in self.params.items():
                d_p = grads[name]
                if self.weight_decay != 0:
                    d_p = d_p.add(param, alpha=self.weight_decay)
                if self.momentum != 0:
                    buf = self.momentum_buffers.get(name)
                    if buf is None:
                        buf = self.momentum_buffers[name] = d_p.detach().clone()
                    else:
                        buf.mul_(self.momentum).add_(d_p)
                    d_p = buf
                param.add_(d_p, alpha=-lr)
        return losses

    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy each model's trained parameters into `models` (in stacking order)."""
        with torch.no_grad():
            for i, model in enumerate(models):
                named = dict(model.named_parameters())
                for name, stacked in self.params.items():
                    named[name].copy_(stacked[i])


def _parameters_with_gradient(model: nn.Module, x: Tensor, y: Tensor) -> set[str]:
    """Names of the parameters a cross-entropy backward pass gives a gradient (what torch's SGD updates)."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    names = {name for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return names


def train_vmap(
    blueprint: Blueprint,
    data: TensorData,
    recipe: Recipe,
    seeds: list[int],
    device: torch.device,
    chunk_size: int | None,
    progress: str | None,
) -> tuple[list[nn.Module], int]:
    """Train the bank with vmap, `chunk_size` models at a time; returns the models and the chunk size used."""
    first = blueprint.build(seeds[0], device=device)
    reason = vmap_unsupported_reason(first)
    if reason is not None:
        raise UserError(f"vmap cannot train {blueprint.model}: {reason}; use mode sequential or process")
    bs = min(recipe.batch_size, len(data))
    chunk = min(len(seeds), chunk_size or vmap_chunk_size(first, data.x[:bs], device))
    chunks = [seeds[i : i + chunk] for i in range(0, len(seeds), chunk)]
    bar = progress_bar(total=recipe.epochs * len(chunks), desc=progress, leave=False, disable=progress is None)
    models: list[nn.Module] = []
    for part in chunks:
        models.extend(_train_vmap_chunk(blueprint, data, recipe, part, device, bar))
    bar.close()
    return models, chunk


def _train_vmap_chunk(
    blueprint: Blueprint, data: TensorData, recipe: Recipe, seeds: list[int], device: torch.device, bar: tqdm
) -> list[nn.Module]:
    """Train one chunk of the bank together, each model with its own batch order and augmentation stream."""
    models = [blueprint.build(s, device=device).train() for s in seeds]
    n, bs = len(data), recipe.batch_size
    try:
        trainer = StackedSGD(models, recipe, data.x[:bs], data.y[:bs])
    except RuntimeError as exc:
        raise UserError(f"vmap cannot train {blueprint.model}: {str(exc).splitlines()[0]}") from None
    generators = [seeded_generator(s, "train-batches") for s in seeds]
    augment = AUGMENTATIONS[recipe.augment]
    for epoch, lr in enumerate(_epoch_lrs(recipe)):
        # per generator the draws come in the order `fit` makes them: the epoch's permutation, then
        # one augmentation per batch
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(data.x.device)
        non_finite = torch.zeros(len(seeds), dtype=torch.bool, device=device)
        for start in range(0, n, bs):
            idx = orders[:, start : start + bs]
            x, y = data.x[idx], data.y[idx]
            if augment is not None:
                x = torch.stack([augment(x[i], g) for i, g in enumerate(generators)])
            losses = trainer.step(x, y, lr)
            non_finite |= ~torch.isfinite(losses.detach())
        if bool(non_finite.any()):
            bad = [s for s, flag in zip(seeds, non_finite.tolist(), strict=True) if flag]
            raise Diverged(f"loss became NaN or infinite in epoch {epoch + 1} of {recipe.epochs} (seeds {bad})")
        bar.update(1)
    trainer.write_back(models)
    return models
