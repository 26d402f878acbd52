"""Bi-level selection of worst-case (or easiest) forget sets, after "Challenging Forgets" (Fan et al., 2024).

Upper level: weights w ∈ [0, 1]^G over G groups (training samples, or classes) with
Σ w = m; minimise Σ_g w_g·ℓ_g(θ(w)) + γ‖w‖², i.e. put weight on groups whose loss stays
LOW after the lower level has unlearned them: the hardest to forget (the rest of the
data explains them). The easiest set flips the sign of the loss term.
Lower level: θ(w) = argmin Σ_i (1 − w_g(i))·CE(f_θ(x_i), y_i), solved by signSGD
(θ ← θ − η·sign(∇), no momentum) from the original model ("ft") or a fresh
initialisation ("retrain"). The upper gradient is only the direct term ℓ_g (a signSGD
unroll has no implicit term), so one upper step is w ← Proj(w − η_w·(±ℓ + 2γw)), with
Proj the bisection projection onto {w ∈ [0, 1]^G : Σ w = m}. The set is the top m groups.

Differences from the reference code, on purpose:
- the per-sample (or per-class) losses are computed in eval mode (the reference kept the
  model in train mode, so BatchNorm statistics and dropout leaked into the upper gradient);
- signSGD has no weight decay (the reference passed weight decay into SGD's dampening slot);
- the default upper step is 1e4·(1/mean loss) scaled, see `BilevelSettings.upper_lr`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.progress import progress_bar
from unlearn.seeding import derive_seed
from unlearn.seeding import generator as seeded_generator
from unlearn.train import Phase, fit


class BilevelSettings(BaseModel):
    """Every hyperparameter of the bi-level selection; `worst-case:F:key=value` sets any of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    objective: Literal["hardest", "easiest"] = "hardest"
    """hardest: the worst-case set (low loss after unlearning); easiest: the sign-flipped contrast."""
    lower: Literal["ft", "retrain"] = "ft"
    """Where each lower-level solve starts: the original model (FT-style) or a fresh initialisation."""
    upper_iters: PositiveInt = 10
    """Upper-level iterations U (the reference's default)."""
    lower_epochs: PositiveInt = 2
    """Epochs K of signSGD over the whole training set per upper iteration."""
    lower_lr: PositiveFloat = 1e-3
    """signSGD step: every parameter moves by exactly this much per step."""
    upper_lr: PositiveFloat = 1e4
    """η_w. Per-sample losses of a trained model are ~1e-3..1, so with the reference's nominal 1e-2
    the weights move by ~1e-5 and the set never leaves its random start; ~1e4 (the value the
    reference used in practice) moves a sizeable part of the set each iteration."""
    gamma: NonNegativeFloat = 0.0
    """γ of the ‖w‖² regulariser."""
    batch_size: PositiveInt = 64


@dataclass
class Selection:
    """The outcome: the chosen groups, the final weights and one trajectory entry per upper iteration."""

    chosen: np.ndarray
    weights: np.ndarray
    trajectory: list[dict[str, float]]


class SignSGD(torch.optim.Optimizer):
    """θ ← θ − lr·sign(∇θ): no momentum, no weight decay."""

    def __init__(self, params, lr: float):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102  (torch's signature)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])


def project_capped_simplex(w: np.ndarray, budget: float, iters: int = 100) -> np.ndarray:
    """The Euclidean projection of `w` onto {v ∈ [0, 1]^G : Σ v = budget}, by bisection on the shift μ.

    Σ clamp(w − μ, 0, 1) falls monotonically from G (μ ≤ min w − 1) to 0 (μ ≥ max w).
    """
    lo, hi = float(w.min()) - 1.0, float(w.max())
    for _ in range(iters):
        mu = (lo + hi) / 2
        if np.clip(w - mu, 0.0, 1.0).sum() > budget:
            lo = mu
        else:
            hi = mu
    return np.clip(w - (lo + hi) / 2, 0.0, 1.0)


def top_groups(weights: np.ndarray, m: int) -> np.ndarray:
    """The m groups of largest weight, ties to the lower index; sorted."""
    order = np.lexsort((np.arange(len(weights)), -weights))
    return np.sort(order[:m])


@torch.no_grad()
def per_sample_loss(model: nn.Module, data: TensorData, batch_size: int = 1024) -> Tensor:
    """CE of every sample, in eval mode (the model's flags are restored)."""
    was_training = model.training
    model.eval()
    losses = [F.cross_entropy(model(x), y, reduction="none") for x, y in data.batches(batch_size)]
    model.train(was_training)
    return torch.cat(losses)


def select(
    start: Callable[[], nn.Module],
    data: TensorData,
    groups: np.ndarray,
    budget: int,
    settings: BilevelSettings,
    seed: int,
    progress: bool = False,
) -> Selection:
    """Choose `budget` of the groups (`groups[i]` is sample i's group, 0..G-1) by bi-level selection.

    `start()` returns the model each lower-level solve starts from (a copy of the original, or a
    fresh initialisation). The weights start as the indicator of a seeded random `budget`-subset.
    """
    n_groups = int(groups.max()) + 1
    device = data.x.device
    group_of = torch.as_tensor(groups, dtype=torch.long, device=device)
    counts = np.bincount(groups, minlength=n_groups).astype(np.float64)
    init = np.random.default_rng(derive_seed(seed, "bilevel-init")).choice(n_groups, size=budget, replace=False)
    w = np.zeros(n_groups)
    w[init] = 1.0
    sign = 1.0 if settings.objective == "hardest" else -1.0
    positions = data.with_labels(torch.arange(len(data), device=device))  # the loss looks labels and weights up
    trajectory: list[dict[str, float]] = []
    chosen = top_groups(w, budget)
    bar = progress_bar(range(settings.upper_iters), desc=f"{settings.objective} set", unit="iter", disable=not progress)
    for it in bar:
        keep = torch.as_tensor(1.0 - w, dtype=torch.float32, device=device)[group_of]

        def weighted_ce(model: nn.Module, x: Tensor, pos: Tensor, keep: Tensor = keep) -> Tensor:
            return (keep[pos] * F.cross_entropy(model(x), data.y[pos], reduction="none")).mean()

        model = start()
        fit(model, [Phase(positions, weighted_ce, settings.batch_size)], epochs=settings.lower_epochs,
            optimizer=SignSGD(model.parameters(), settings.lower_lr),
            generator=seeded_generator(seed, "bilevel-lower", str(it)))
        loss = per_sample_loss(model, data).double().cpu().numpy()
        g = np.bincount(groups, weights=loss, minlength=n_groups) / np.maximum(counts, 1.0)
        objective = float(sign * (w * g).sum() + settings.gamma * (w**2).sum())
        w = project_capped_simplex(w - settings.upper_lr * (sign * g + 2 * settings.gamma * w), budget)
        new = top_groups(w, budget)
        trajectory.append({
            "iteration": it + 1,
            "objective": objective,
            "set_loss": float(g[new].mean()),
            "mean_loss": float(loss.mean()),
            "changed": int(budget - np.intersect1d(new, chosen).size),
        })
        chosen = new
        bar.set_postfix(objective=f"{objective:.4g}", changed=trajectory[-1]["changed"])
    bar.close()
    return Selection(chosen, w, trajectory)
