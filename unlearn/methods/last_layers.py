"""Shared machinery of EU-k and CF-k: what a "layer" is, and training only the last k of them.

A layer is a module that owns parameters directly (Conv, Linear, an attention block's
input projection, ...), in registration order (`named_modules()`, which follows the
forward order of the models here), together with the normalisation layers
(BatchNorm/LayerNorm/GroupNorm/InstanceNorm) registered after it and before the next
layer. The head is the last layer. The small CNN has 4 layers (2 conv, 1 hidden
linear, head); ResNet-18 has 21 (20 convolutions, each with its BatchNorm, and the
head).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.errors import UserError
from unlearn.methods.base import Method, PositiveFloat, PositiveInt, UnlearnRequest
from unlearn.train import AUGMENTATIONS, Phase, fit, recipe_optimizer

NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
"""Normalisation layers: they belong to the layer before them."""


def layers(model: nn.Module) -> list[list[str]]:
    """The model's layers in order, each as the qualified names of its modules (weight module, then norms)."""
    groups: list[list[str]] = []
    for name, module in model.named_modules():
        owns_params = next(module.parameters(recurse=False), None) is not None
        if isinstance(module, NORMS) and groups:
            groups[-1].append(name)
        elif owns_params:
            groups.append([name])
    return groups


def check_k(method: str, k: int, model: nn.Module) -> None:
    """Raise UserError unless 1 <= k <= the number of layers of `model`."""
    count = len(layers(model))
    if not 1 <= k <= count:
        raise UserError(
            f"{method}: k={k} but the model has {count} layers (Conv/Linear with their norms); use 1 <= k <= {count}"
        )


@dataclass(frozen=True)
class LastLayersHParams:
    """k = 1 as the reference's default; `epochs`, `lr`, `batch_size` None mean the benchmark recipe's.

    The reference trains the last k layers with the same recipe as retraining from
    scratch (epochs, learning-rate schedule, batch size, momentum, weight decay).
    """

    k: PositiveInt = 1
    epochs: PositiveInt | None = None
    lr: PositiveFloat | None = None
    batch_size: PositiveInt | None = None


class LastLayers(Method):
    """Freeze all but the last k layers, optionally re-initialise those, and train them on D_r with CE.

    Subclasses set `reinit` and `name`.
    """

    paper = "https://arxiv.org/abs/2201.06640"
    HParams = LastLayersHParams
    search = {"lr": (None, 0.01, 0.1, 1.0), "k": (1, 2, 3)}
    reinit: bool = False
    name: str = ""
    """The registered name, for messages and the fresh-initialisation tag."""

    def check(self, model: nn.Module) -> None:
        check_k(self.name, self.hparams.k, model)

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: LastLayersHParams = self.hparams
        model = request.model
        check_k(self.name, hp.k, model)
        trained = {name for group in layers(model)[-hp.k :] for name in group}
        if self.reinit:
            reinitialise(model, request.new_model(self.name), trained)
        frozen_norms = [m for name, m in model.named_modules() if isinstance(m, NORMS) and name not in trained]
        params = [p for name, m in model.named_modules() if name in trained for p in m.parameters(recurse=False)]
        flags = {p: p.requires_grad for p in model.parameters()}
        model.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)

        def loss(m: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            for norm in frozen_norms:  # frozen norms keep their running statistics
                norm.eval()
            return F.cross_entropy(m(x), y)

        recipe = request.recipe
        epochs = hp.epochs or recipe.epochs
        optimizer, scheduler = recipe_optimizer(params, recipe, epochs, hp.lr)
        batch_size = hp.batch_size or recipe.batch_size
        phase = Phase(request.require_retain(), loss, batch_size, augment=AUGMENTATIONS[recipe.augment])
        try:
            fit(
                model, [phase], epochs=epochs, optimizer=optimizer, scheduler=scheduler,
                generator=request.generator("batches"), progress=self.name if request.progress else None,
            )
        finally:
            for p, flag in flags.items():
                p.requires_grad_(flag)
            model.train()
        return model


@torch.no_grad()
def reinitialise(model: nn.Module, fresh: nn.Module, names: set[str]) -> None:
    """Copy the own parameters and buffers of the modules `names` from the freshly initialised `fresh`."""
    for name in names:
        target, source = model.get_submodule(name), fresh.get_submodule(name)
        for key, tensor in [*target.named_parameters(recurse=False), *target.named_buffers(recurse=False)]:
            tensor.copy_(getattr(source, key))
