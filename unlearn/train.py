"""The one training loop: original models, oracles and every fine-tuning-based method use `fit`.

A method describes its epoch as a list of phases (which data, which loss, which
epochs), plus optional hooks around the optimiser step; `fit` does the rest.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.errors import Diverged
from unlearn.progress import progress_bar
from unlearn.seeding import generator as seeded_generator
from unlearn.spec import Recipe

LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""(model, x, y) -> scalar loss."""

Augment = Callable[[Tensor, torch.Generator], Tensor]
StepHook = Callable[[nn.Module, torch.optim.Optimizer], None]
"""(model, optimizer) -> None, run around `optimizer.step()`."""


@dataclass
class Phase:
    """One pass over `data` with `loss`, run in every epoch for which `active(epoch)` holds."""

    data: TensorData
    loss: LossFn
    batch_size: int
    active: Callable[[int], bool] = lambda epoch: True
    augment: Augment | None = None


def cross_entropy(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The supervised loss of labels `y`: the mean cross-entropy of the model's logits against `y`, or, when the
    model defines `label_loss(x, y)`, that (a language model's next-token cross-entropy of the labelled answer,
    `unlearn.language.model`), so that every method trains any kind of model with its own objective."""
    own = getattr(model, "label_loss", None)
    return own(x, y) if own is not None else F.cross_entropy(model(x), y)


def negative_cross_entropy(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Minus `cross_entropy`: minimising it is gradient ascent on the loss."""
    return -cross_entropy(model, x, y)


def label_log_likelihood(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """log p(y | x) per sample: log-softmax of the logits at `y`, or the model's own `label_log_likelihood(x, y)`
    when it defines one (a language model's summed log-likelihood of the labelled answer's tokens)."""
    own = getattr(model, "label_log_likelihood", None)
    if own is not None:
        return own(x, y)
    return torch.log_softmax(model(x).float(), dim=1).gather(1, y[:, None]).squeeze(1)


def crop_flip(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop with `pad` zero padding and random horizontal flip, done on x's device."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen).to(x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return horizontal_flip(padded[batch, chan, rows, cols], gen)


def horizontal_flip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Flip each image left-right with probability 1/2, done on x's device (DDPM's only augmentation)."""
    flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


AUGMENTATIONS: dict[str, Augment | None] = {"none": None, "crop-flip": crop_flip, "flip": horizontal_flip}


def sgd(params: Iterable[nn.Parameter], lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> torch.optim.SGD:
    """The SalUn-family optimiser: SGD with momentum and weight decay."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


MIXED_PRECISION_ON_CUDA = True
"""Process-wide default of `fit(mixed_precision=None)` on CUDA: set it False to train in float32 on GPUs too."""


def use_mixed_precision(device: torch.device, requested: bool | None = None) -> bool:
    """Whether `fit` trains with mixed precision on `device`: `requested`, or by default on CUDA only.

    Mixed precision (with channels-last memory) is a CUDA path: CPU runs stay in float32 so that the
    same config and seed give identical numbers, and asking for it elsewhere raises ValueError.
    """
    if requested is None:
        return device.type == "cuda" and MIXED_PRECISION_ON_CUDA
    if requested and device.type != "cuda":
        raise ValueError(f"mixed precision training is implemented for CUDA only, not for device {device}")
    return requested


class _Float32:
    """How `fit` runs forward, backward and step: the plain float32 path (every op as written)."""

    def __enter__(self) -> _Float32:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def inputs(self, x: Tensor) -> Tensor:
        """The batch as the model receives it."""
        return x

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The context of the forward pass and loss."""
        return contextlib.nullcontext()

    def backward(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backpropagate `loss`, leaving the gradients as `before_step` hooks must see them."""
        loss.backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser step."""
        optimizer.step()


class _MixedPrecision(_Float32):
    """fit's CUDA path: autocast (bfloat16, or float16 with a gradient scaler) and channels-last memory."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    def __enter__(self) -> _MixedPrecision:
        self.model.to(memory_format=torch.channels_last)  # 4-D tensors only; the Parameters stay the same objects
        return self

    def __exit__(self, *exc: object) -> None:
        self.model.to(memory_format=torch.contiguous_format)  # callers (checkpoints, flat views) get plain layout

    def inputs(self, x: Tensor) -> Tensor:
        """A 4-D batch in channels-last memory (other inputs unchanged)."""
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Autocast to the chosen half-precision type on CUDA."""
        return torch.autocast("cuda", dtype=self.dtype)

    def backward(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backpropagate `loss` (scaled for float16), then unscale so that hooks see true gradients."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser step (float16: skipped by the scaler when the gradients overflowed)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


def fit(
    model: nn.Module,
    phases: Sequence[Phase],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    before_step: StepHook | None = None,
    after_step: StepHook | None = None,
    epoch_start: Callable[[int], None] | None = None,
    max_steps: int | None = None,
    progress: str | None = None,
    mixed_precision: bool | None = None,
) -> None:
    """Train `model` in place for `epochs` epochs of `phases`.

    Batches are shuffled with `generator` (CPU, so runs match across devices). The
    scheduler, if any, steps once per epoch. `before_step(model, optimizer)` sees the
    gradients just before `optimizer.step()` (to mask or clip them); `after_step` runs
    right after it (to project weights or reset optimiser state); `epoch_start(epoch)`
    runs before each epoch (0-based), for losses that change with the epoch. Training stops
    after `max_steps` optimiser steps when given. A non-finite loss raises `Diverged` at the
    end of its epoch (checked once per epoch so that GPUs are not synchronised every step).
    `progress` is a label for an epoch progress bar, or None for no bar.

    `mixed_precision` (None: on for CUDA only, see `use_mixed_precision`) runs each loss and
    its backward pass under autocast, in bfloat16 where the GPU supports it and otherwise in
    float16 with a gradient scaler (unscaled before `before_step`, so hooks see true
    gradients), with the model and 4-D batches in channels-last memory while training.
    Off, every op runs in float32 exactly as written.
    """
    model.train()
    device = next(model.parameters()).device
    precision = _MixedPrecision(model) if use_mixed_precision(device, mixed_precision) else _Float32()
    bar = progress_bar(range(epochs), desc=progress, leave=False, disable=progress is None)
    steps = 0
    with precision:
        for epoch in bar:
            if max_steps is not None and steps >= max_steps:
                break
            if epoch_start is not None:
                epoch_start(epoch)
            non_finite = torch.zeros((), dtype=torch.bool, device=device)
            for phase in phases:
                if not phase.active(epoch):
                    continue
                for x, y in phase.data.batches(phase.batch_size, shuffle=True, generator=generator):
                    if max_steps is not None and steps >= max_steps:
                        break
                    steps += 1
                    if phase.augment is not None:
                        x = phase.augment(x, generator)
                    with precision.autocast():
                        loss = phase.loss(model, precision.inputs(x), y)
                    non_finite |= ~torch.isfinite(loss.detach())
                    optimizer.zero_grad(set_to_none=True)
                    precision.backward(loss, optimizer)
                    if before_step is not None:
                        before_step(model, optimizer)
                    precision.step(optimizer)
                    if after_step is not None:
                        after_step(model, optimizer)
            if bool(non_finite):
                raise Diverged(f"loss became NaN or infinite in epoch {epoch + 1} of {epochs}")
            if scheduler is not None:
                scheduler.step()
    bar.close()


def recipe_optimizer(
    params: Iterable[nn.Parameter], recipe: Recipe, epochs: int | None = None, lr: float | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The recipe's optimiser (SGD, or Adam) and per-epoch schedule over `epochs` (default: the recipe's), at `lr`
    (default: the recipe's)."""
    optimizer = OPTIMIZERS[recipe.optimizer](params, lr or recipe.lr, recipe)
    return optimizer, SCHEDULES[recipe.schedule](optimizer, epochs or recipe.epochs, recipe)


SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, int, Recipe], torch.optim.lr_scheduler.LRScheduler | None]] = {
    "constant": lambda optimizer, epochs, recipe: None,
    "cosine": lambda optimizer, epochs, recipe: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs),
    "multistep": lambda optimizer, epochs, recipe: torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=recipe.milestones, gamma=recipe.gamma
    ),
}
"""A recipe's `schedule` -> (optimiser, epochs, recipe) -> its per-epoch learning-rate scheduler (None: constant)."""


OPTIMIZERS: dict[str, Callable[[Iterable[nn.Parameter], float, Recipe], torch.optim.Optimizer]] = {
    "sgd": lambda params, lr, recipe: sgd(params, lr, recipe.momentum, recipe.weight_decay),
    "adam": lambda params, lr, recipe: torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay),
}
"""A recipe's `optimizer` -> (parameters, learning rate, recipe) -> the optimiser."""


def clip_gradients(max_norm: float | None) -> StepHook | None:
    """A `before_step` hook clipping the gradient's global norm to `max_norm` (None: no hook)."""
    if max_norm is None:
        return None
    return lambda model, _optimizer: torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def oracle_recipe(recipe: Recipe, samples: int, reference: int | None) -> tuple[Recipe, int | None]:
    """The recipe a model trains with on `samples` samples, and its optimiser-step limit (None: none), when the
    original model trained on `reference` samples (None: these are the original's).

    Under `oracle_steps: original` a smaller training set (an oracle's D_r) trains for exactly the original's
    number of steps, epochs x ceil(reference / batch_size): the epochs are scaled up to cover them (the last one
    cut short at the limit), and so is the schedule, whose cosine then spans the scaled epochs and whose multistep
    milestones move by the same factor. Otherwise the recipe is unchanged (the same epochs, fewer steps)."""
    if recipe.oracle_steps == "epochs" or reference is None or not 0 < samples < reference:
        return recipe, None
    steps = recipe.epochs * math.ceil(reference / recipe.batch_size)
    epochs = math.ceil(steps / math.ceil(samples / recipe.batch_size))
    factor = epochs / recipe.epochs  # >= 1, so distinct milestones stay distinct and below `epochs`
    milestones = [round(m * factor) for m in recipe.milestones]
    return recipe.model_copy(update={"epochs": epochs, "milestones": milestones}), steps


def train_with_recipe(
    model: nn.Module, data: TensorData, recipe: Recipe, seed: int, progress: str | None = None,
    loss: LossFn = cross_entropy, reference: int | None = None,
) -> nn.Module:
    """Train `model` on `data` with a benchmark recipe: the original model and the oracle both come from here.
    `loss` is the model's training objective (cross-entropy for classifiers; the DDPM loss for generators);
    `reference` the number of samples the original model trains on, which sets an oracle's step count under
    `oracle_steps: original` (`oracle_recipe`)."""
    recipe, max_steps = oracle_recipe(recipe, len(data), reference)
    optimizer, scheduler = recipe_optimizer(model.parameters(), recipe)
    phase = Phase(data, loss, recipe.batch_size, augment=AUGMENTATIONS[recipe.augment])
    fit(
        model,
        [phase],
        epochs=recipe.epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=seeded_generator(seed, "train-batches"),
        before_step=clip_gradients(recipe.max_grad_norm),
        max_steps=max_steps,
        progress=progress,
    )
    return model


def check_finite(model: nn.Module) -> None:
    """Raise `Diverged` if any parameter or buffer of `model` is NaN or infinite."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise Diverged(f"weights became NaN or infinite ({name})")
