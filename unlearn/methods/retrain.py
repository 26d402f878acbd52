"""Retrain: train from scratch on the retain set with the benchmark's recipe (the oracle)."""

from __future__ import annotations

from torch import nn

from unlearn.methods.base import METHODS, Method, UnlearnRequest


@METHODS.register("retrain")
class Retrain(Method):
    """Retrain from scratch on D_r with the original recipe and seed: the oracle every gap is measured to.

    Faithful to the reference: same recipe, same initialisation and batch-order seed
    as the original model, only the forget set removed. Its output is cached per
    (benchmark, forget set, seed), so the oracle of a cell and the `retrain` row of
    the table are the same model, trained once; its run time is the training time
    recorded when it was built. On a generation benchmark it trains the diffusion model without the
    forgotten classes (`request.train_recipe` is the benchmark's own training, whatever its objective).
    """

    cache_output = True
    kinds = ("classification", "generation", "language")

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        return request.train_recipe(request.new_model(), request.require_retain())
