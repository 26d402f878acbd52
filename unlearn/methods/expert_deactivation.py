"""Expert deactivation (MoTE, adapted): switch off the experts routed distinctively on the forget set.

Two registered names, so that both are leaderboard rows: `expert-deactivation` chooses experts by their
routing scores, `expert-deactivation-random` (the control) draws the same number of experts at random from
the cell's seed. Neither trains: each changes only the routers' `route_bias` buffers of a mixture-of-experts
model (unlearn/models/moe.py), which the method finds by duck typing (`routed_layers`), not by class name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.methods.base import METHODS, Method, PositiveInt, Track, UnlearnRequest
from unlearn.models.moe import SWITCH, Routed, routed_layers

SCORE_BATCH = 1024
"""Samples per forward pass while counting selections (it changes no result, only memory and speed)."""

Unit = tuple[int, int]
"""(routed layer's position in `routed_layers`, expert index)."""


@dataclass(frozen=True)
class ExpertDeactivationHParams:
    """`k` experts (counted over all MoE layers) to switch off, or with `mode: force` to force on.

    MoTE switches off 10 of DeepSeek-R1's 14,848 routed experts; here a model has 2 × 8, so k is
    tuned per benchmark on validation data like every other hyperparameter.
    """

    k: PositiveInt = 2
    mode: Literal["off", "force"] = "off"


def selection_frequencies(model: nn.Module, layers: list[Routed], data: TensorData) -> Tensor:
    """L × E: the share of `data`'s samples whose top-k choice includes each expert, per routed layer."""
    counts = torch.zeros(len(layers), max(layer.num_experts for layer in layers))
    seen: list[Tensor] = []

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        seen.append(module.route(inputs[0]).selected)  # type: ignore[operator]

    handles = [layer.register_forward_hook(hook) for layer in layers]  # type: ignore[attr-defined]
    try:
        with torch.no_grad():
            for x, _ in data.batches(SCORE_BATCH):
                seen.clear()
                model(x)
                for i, (layer, selected) in enumerate(zip(layers, seen, strict=True)):
                    counts[i, : layer.num_experts] += torch.bincount(
                        selected.flatten().cpu(), minlength=layer.num_experts
                    ).float()
    finally:
        for handle in handles:
            handle.remove()
    return counts / len(data)


def switchable(layers: list[Routed], mode: str) -> int:
    """How many experts can be chosen: all of them when forcing; when switching off, each layer must keep
    its top-k selectable experts."""
    if mode == "force":
        return sum(layer.num_experts for layer in layers)
    return sum(layer.num_experts - layer.top_k for layer in layers)


def take(order: list[Unit], k: int, layers: list[Routed], mode: str) -> list[Unit]:
    """The first `k` units of `order`, skipping (when switching off) any that would leave its layer fewer
    selectable experts than its top-k."""
    left = [layer.num_experts for layer in layers]
    chosen: list[Unit] = []
    for layer, expert in order:
        if len(chosen) == k:
            break
        if mode == "off" and left[layer] <= layers[layer].top_k:
            continue
        left[layer] -= 1
        chosen.append((layer, expert))
    return chosen


class ExpertDeactivation(Method):
    """Switch off the top-k experts by how much more often the router picks them on D_f than on D_r.

    MoTE (arXiv 2502.11096) logs routed-expert activations on prompts that elicit a behaviour and
    on contrasting prompts ("functional Token Resonance Imaging"), ranks experts by how
    distinctively they fire, and at inference masks the router logits of the top k. Here the
    behaviour samples are the forget set and the contrast is the retain set; an expert's score is
    its selection frequency on D_f minus that on D_r (the share of samples whose top-2 includes it),
    per MoE layer; experts of all layers are ranked together (ties: earlier layer, lower index
    first) and the top k are switched off by setting their `route_bias` to -1e4 (never selected).
    `mode: force` sets it to +1e4 instead (always selected): MoTE's forcing, which raises the
    behaviour (here: forget-class predictions); it is a finding to report, not an unlearning method.

    Deliberate differences from MoTE: classifier samples instead of tokens (one routing decision
    per sample and layer); the score is the plain frequency difference (the paper's exact fTRI
    normalisation is not reproduced); the mask is a large finite bias rather than -inf, so the
    model stays finite (see unlearn/models/moe.py); when switching off, an expert whose layer would
    keep fewer than its top-2 selectable experts is skipped and the next in rank taken, so k is
    bounded by Σ(E − 2) over layers. No weight changes. `request.info` records the chosen experts
    with their scores, every score, and the scoring time.
    """

    paper = "https://arxiv.org/abs/2502.11096"
    HParams = ExpertDeactivationHParams
    search = {"k": (1, 2, 3, 4, 6)}
    name = "expert-deactivation"

    @property
    def track(self) -> Track:
        return Track.FULL

    def check(self, model: nn.Module) -> None:
        hp: ExpertDeactivationHParams = self.hparams
        layers = [layer for _, layer in routed_layers(model)]
        if not layers:
            raise UserError(
                f"{self.name} needs a mixture-of-experts model with a router (a layer with route_bias and route()); "
                f"this benchmark's model (of {model_summary(model)}) has none; use one with model: moe (e.g. digits-moe)"
            )
        most = switchable(layers, hp.mode)
        if hp.k > most:
            total = sum(layer.num_experts for layer in layers)
            keep = "" if hp.mode == "force" else " while each layer keeps its top-k experts selectable"
            raise UserError(
                f"{self.name}: k={hp.k} but the model's {len(layers)} MoE layers have {total} experts, of which at "
                f"most {most} can be chosen{keep}; use 1 <= k <= {most}"
            )

    def order(self, units: list[Unit], scores: Tensor, request: UnlearnRequest) -> list[Unit]:
        """The (layer, expert) units, best candidate first: by score, descending (stable)."""
        return sorted(units, key=lambda unit: -float(scores[unit]))

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: ExpertDeactivationHParams = self.hparams
        model = request.model
        self.check(model)
        named = routed_layers(model)
        layers = [layer for _, layer in named]
        model.eval()
        start = time.perf_counter()
        scores = selection_frequencies(model, layers, request.require_forget()) - selection_frequencies(
            model, layers, request.require_retain()
        )
        scoring = time.perf_counter() - start
        units = [(i, e) for i, layer in enumerate(layers) for e in range(layer.num_experts)]
        chosen = take(self.order(units, scores, request), hp.k, layers, hp.mode)
        with torch.no_grad():
            for i, e in chosen:
                layers[i].route_bias[e] = SWITCH if hp.mode == "force" else -SWITCH
        request.info.update(
            experts=[{"layer": named[i][0], "expert": e, "score": round(float(scores[i, e]), 6)} for i, e in chosen],
            scores={name: [round(float(s), 6) for s in scores[i, : layer.num_experts]] for i, (name, layer) in enumerate(named)},
            score_seconds=round(scoring, 4),
            mode=hp.mode,
        )
        return model


def model_summary(model: nn.Module) -> str:
    """The distinct kinds of layer in `model`, for an error message (e.g. 'Conv2d, Linear, ReLU')."""
    kinds = {type(m).__name__ for m in model.modules() if next(m.children(), None) is None}
    return ", ".join(sorted(kinds)) or "no layers"


METHODS.register("expert-deactivation")(ExpertDeactivation)


@METHODS.register("expert-deactivation-random")
class ExpertDeactivationRandom(ExpertDeactivation):
    """Control for expert-deactivation: switch off k experts drawn at random from the cell's seed.

    The same scoring pass runs (its scores are recorded for comparison), but the experts are a
    uniformly random permutation of all (layer, expert) units, drawn from the request's seeded
    generator `request.generator("experts")`, taken in order under the same per-layer rule.
    """

    name = "expert-deactivation-random"

    def order(self, units: list[Unit], scores: Tensor, request: UnlearnRequest) -> list[Unit]:
        perm = torch.randperm(len(units), generator=request.generator("experts")).tolist()
        return [units[j] for j in perm]
