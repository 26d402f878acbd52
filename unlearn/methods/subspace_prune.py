"""Subspace pruning (Chavhan et al. 2024, "Memorized images in diffusion models share a subspace"): zero the
weights that memorised conditions use far more than normal ones, found Wanda-style, with no training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from unlearn.errors import UserError
from unlearn.methods.base import METHODS, Fraction, Method, NonNegativeFloat, PositiveInt, Track, UnlearnRequest
from unlearn.models.diffusion import TIMESTEPS
from unlearn.subspace import Masks, MaskSettings, memorisation_masks, prunable_layers, prune


@dataclass(frozen=True)
class SubspacePruneHParams:
    """The reference's defaults (ruchikachavhan/concept-prune, memorisation runs): `skill_ratio` 0.01 (the
    fraction of each weight row's columns considered), the union over the first `timesteps` = 10 denoising steps
    of a 50-step sampler (`sampler_steps`). `guidance` is the sampling trajectory's classifier-free guidance
    (the reference samples with Stable Diffusion's default 7.5; here the generation benchmarks' 2.0).
    `samples_per_condition`: trajectories per condition (the reference: one image per prompt)."""

    skill_ratio: Fraction = 0.01
    timesteps: PositiveInt = 10
    sampler_steps: Annotated[int, Field(ge=1, le=TIMESTEPS)] = 50
    guidance: NonNegativeFloat = 2.0
    samples_per_condition: PositiveInt = 1


@METHODS.register("subspace-prune")
class SubspacePrune(Method):
    """Subspace pruning: zero the Wanda-scored weights (|W|·‖X‖) that memorised conditions use more than normal
    ones, union over the first denoising steps; no training.

    As the reference (ruchikachavhan/concept-prune, `wanda/wanda.py`, `wanda/save_union_over_time.py`): the
    memorised conditions are the forget set's labels (`request.forget.y`), the normal ones the retain set's
    distinct labels. Both are sampled with the model's guided DDIM sampler from the same seeded noise (the
    reference generates every prompt from the same seed); forward hooks record, at each of the first `timesteps`
    steps, the column norms ‖X_j‖ of each scored layer's input over all guided ε evaluations (conditional and
    null halves), each row scaled to unit norm first. Per step and layer, each output row keeps its top columns
    by the memorised score |W|·‖X_mem‖, where that exceeds the normal score |W|·‖X_norm‖; the masks are united
    over the steps (the reference's select_ratio 0) and those weights are zeroed once. `request.info` records
    the number and fraction of weights pruned, overall, of the scored layers, and per layer.

    Deliberate differences:
    - Layers: the reference hooks the second linear of every transformer FFN of Stable Diffusion's UNet. This
      class-conditional UNet has no transformer blocks, so every layer that is a matrix applied at each position
      is scored: all `nn.Linear` (the time-embedding MLP, each resnet's `time_emb_proj`, attention projections
      where the UNet has attention) and every 1×1 `nn.Conv2d` (the resnets' `conv_shortcut`). The time-embedding
      MLP sees only the step, never the condition, so its memorised and normal norms are equal and it is never
      pruned.
    - Columns per row: ⌈skill_ratio · columns⌉, not the reference's ⌊·⌋, which would select nothing in a layer
      of fewer than 100 inputs (most layers here have 32 to 128).
    - Sides of equal size: the reference zips memorised and normal prompts one to one. Here each side has
      max(#memorised, #normal) · `samples_per_condition` trajectories, its conditions cycled, trajectory i of both
      sides from the same noise; so the summed norms compare like for like whatever the counts.
    - The sampler is this model's DDIM (η = 0) rather than Stable Diffusion's default scheduler, stopped after
      the steps that are scored; guidance 2.0 (the benchmarks' sampling guidance) rather than SD's 7.5.
    """

    paper = "https://arxiv.org/abs/2406.18566"
    docs = "docs/generation.md#methods"
    HParams = SubspacePruneHParams
    search = {"skill_ratio": (0.005, 0.01, 0.02), "timesteps": (5, 10, 20)}
    kinds = ("generation",)

    @property
    def track(self) -> Track:
        return Track.FULL

    def check(self, model: nn.Module) -> None:
        hp: SubspacePruneHParams = self.hparams
        if hp.timesteps > hp.sampler_steps:
            raise UserError(f"subspace-prune: timesteps={hp.timesteps} but the sampler has sampler_steps="
                            f"{hp.sampler_steps} steps; choose timesteps <= sampler_steps")
        if not prunable_layers(model):
            raise UserError("subspace-prune: the model has no Linear or 1x1 Conv2d layer to prune")

    def settings(self) -> MaskSettings:
        hp: SubspacePruneHParams = self.hparams
        return MaskSettings(hp.skill_ratio, hp.timesteps, hp.sampler_steps, hp.guidance, hp.samples_per_condition)

    def masks(self, request: UnlearnRequest) -> Masks:
        """The union mask of the request's memorised (forget) against normal (retain) conditions."""
        memorised = torch.unique(request.require_forget().y.cpu())
        normal = torch.unique(request.require_retain().y.cpu())
        normal = normal[~torch.isin(normal, memorised)]
        if len(memorised) == 0 or len(normal) == 0:
            raise UserError("subspace-prune needs memorised (forget) and normal (retain) conditions; "
                            f"got {len(memorised)} and {len(normal)}")
        request.info["memorised_conditions"] = len(memorised)
        request.info["normal_conditions"] = len(normal)
        return memorisation_masks(request.model, memorised, normal, self.settings(), request.generator("noise"))

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        self.check(request.model)
        masks = self.masks(request)
        prune(request.model, masks)
        pruned = sum(int(m.sum()) for m in masks.values())
        scored = sum(m.numel() for m in masks.values())
        request.info["pruned_weights"] = pruned
        request.info["pruned_fraction"] = pruned / sum(p.numel() for p in request.model.parameters())
        request.info["pruned_fraction_of_scored"] = pruned / scored
        request.info["pruned_per_layer"] = {name: int(m.sum()) / m.numel() for name, m in masks.items()}
        return request.model
