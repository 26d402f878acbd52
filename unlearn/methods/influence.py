"""IU: influence unlearning with the WoodFisher inverse-Hessian-vector estimate (one update, no training)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.gradients import batch_gradients, trainable
from unlearn.methods.base import METHODS, Method, NonNegativeFloat, PositiveInt, UnlearnRequest
from unlearn.train import cross_entropy


@dataclass(frozen=True)
class InfluenceHParams:
    """Reference defaults (OPTML-Group Unlearn-Sparse README, `--unlearn wfisher --alpha 0.2`; batch 256).

    `alpha` scales the update (tuned per setting in the reference's scripts, from 0.2
    to 10); `samples` is the WoodFisher constant N = 1000 (the reference hard-codes it).
    """

    alpha: NonNegativeFloat = 0.2
    samples: PositiveInt = 1000
    batch_size: PositiveInt = 256


def flat(grads: dict[str, Tensor]) -> Tensor:
    """Concatenate a gradient dict (registration order) into one vector."""
    return torch.cat([g.reshape(-1) for g in grads.values()])


def summed_sample_gradients(model: nn.Module, data: TensorData, batch_size: int) -> Tensor:
    """Σ_i ∇CE(x_i, y_i), flattened: each batch's mean-CE gradient times its length, summed."""
    total = flat({name: torch.zeros_like(p) for name, p in trainable(model).items()})
    for n, grads in batch_gradients(model, data, cross_entropy, batch_size):
        total += flat(grads) * n
    return total


def woodfisher(model: nn.Module, samples: TensorData, v: Tensor, n: int) -> Tensor:
    """The reference's `woodfisher()` recursion over `samples` at batch size 1, kept exactly as written.

    The first sample only sets o = g_0; every later sample g does
    k ← k − (k·g / (N + o·g))·o, then o ← o − (o·g / (N + o·g))·o. It stops after the
    sample with position N + 1, so it reads at most N + 2 samples.
    """
    k = v.clone()
    o: Tensor | None = None
    for idx, (_, grads) in enumerate(batch_gradients(model, samples, cross_entropy, 1)):
        g = flat(grads)
        if o is None:
            o = g.clone()
        else:
            tmp = torch.dot(o, g)
            k -= (torch.dot(k, g) / (n + tmp)) * o
            o -= (tmp / (n + tmp)) * o
        if idx > n:
            break
    return k


@torch.no_grad()
def apply_update(model: nn.Module, delta: Tensor) -> None:
    """θ ← θ + delta, delta flattened in the registration order of the trainable parameters."""
    start = 0
    for p in trainable(model).values():
        p.add_(delta[start : start + p.numel()].view_as(p))
        start += p.numel()


@METHODS.register("influence")
class Influence(Method):
    """IU: θ ← θ + α·H⁻¹v with v the forget-minus-retain gradient and H⁻¹v from a WoodFisher recursion.

    As the reference (OPTML-Group Unlearn-Saliency `Classification/unlearn/Wfisher.py`;
    Unlearn-Sparse's early version had no retain term): model in eval mode; all parameters that require grad;
    Σg_f and Σg_r are sums of per-batch mean-CE gradients times the batch length
    (batch 256, unshuffled); v = Σg_f/(n_f+n_r) − Σg_r·n_f/((n_f+n_r)·n_r), i.e.
    (n_f/(n_f+n_r))·(ḡ_f − ḡ_r); H⁻¹v is estimated by `woodfisher()` over retain samples
    at batch size 1 with N = 1000; θ ← θ + α·H⁻¹v.

    Faithfully kept quirks of `woodfisher()`: it reads N + 2 = 1002 samples (the
    first only initialises o, then 1001 updates, and the `idx > N` test comes after
    the update); o is only ever rescaled, so it stays a multiple of the first sample's
    gradient and the estimate is v minus a multiple of g_0 (not a true WoodFisher
    inverse, which would recompute o from each new gradient); there is no 1/N
    scaling of the result. With fewer retain samples it uses them all.

    Deliberate difference: the reference takes the first 1002 retain samples in
    dataset order (an unshuffled loader); we take a random 1002 in random order,
    seeded by the cell seed, so the estimate does not depend on how the split is
    stored (e.g. sorted by class).
    """

    paper = "https://arxiv.org/abs/2304.04934"
    HParams = InfluenceHParams
    search = {"alpha": (0.2, 1.0, 5.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)}

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: InfluenceHParams = self.hparams
        model = request.model
        retain = request.require_retain()
        model.eval()
        n_f, n_r = len(request.forget), len(retain)
        forget_sum = summed_sample_gradients(model, request.forget, hp.batch_size)
        retain_sum = summed_sample_gradients(model, retain, hp.batch_size)
        v = forget_sum / (n_f + n_r) - retain_sum * (n_f / ((n_f + n_r) * n_r))
        order = torch.randperm(n_r, generator=request.generator("woodfisher"))[: hp.samples + 2]
        direction = woodfisher(model, retain.subset(order), v, hp.samples)
        apply_update(model, hp.alpha * direction)
        return model
