"""ℓ1-sparse: fine-tune on the retain set with an ℓ1 penalty on the weights whose weight decays linearly."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.methods.base import (
    METHODS,
    Method,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SGDHParams,
    UnlearnRequest,
    sgd_fit,
)
from unlearn.train import Phase


@dataclass(frozen=True)
class L1SparseHParams(SGDHParams):
    """Reference defaults (SalUn / Unlearn-Sparse README, CIFAR-10): 10 epochs, lr 0.01, batch 256, SGD momentum
    0.9, wd 5e-4; α = 5e-4 (the reference code has no usable default, see the method's docstring).

    `no_l1_epochs`: the last epochs run without the penalty (the reference's `--no-l1-epochs`, default 0).
    """

    epochs: PositiveInt = 10
    lr: PositiveFloat = 0.01
    alpha: NonNegativeFloat = 5e-4
    no_l1_epochs: NonNegativeInt = 0


def l1_weight(alpha: float, epoch: int, epochs: int, no_l1_epochs: int = 0) -> float:
    """α_e = α·(1 − e/E') in epoch e (0-based) for e < E' = epochs − no_l1_epochs, and 0 afterwards."""
    active = epochs - no_l1_epochs
    return alpha * (1 - epoch / active) if epoch < active else 0.0


def l1_norm(model: nn.Module) -> Tensor:
    """‖θ‖₁: the sum of |θ| over every parameter of `model`."""
    return torch.stack([p.abs().sum() for p in model.parameters()]).sum()


@METHODS.register("l1-sparse")
class L1Sparse(Method):
    """ℓ1-sparse MU: CE on D_r plus α_e·‖θ‖₁, with α_e = α·(1 − e/E) decaying linearly per epoch.

    As the reference (OPTML-Group/Unlearn-Sparse and Unlearn-Saliency `unlearn/FT.py`,
    `FT_l1`, run as `FT_prune`): each batch of D_r minimises mean CE + α_e·‖θ‖₁ with ‖θ‖₁
    the sum of |θ| over all parameters (BN affine and biases included), e the 0-based
    epoch, E the number of epochs minus `no_l1_epochs` (α_e = 0 in those last epochs);
    SGD with momentum and weight decay at a constant learning rate.

    The reference gives α no usable default (its `--alpha` defaults to 0.2, a value shared
    with other methods; its README passes `--alpha ${alpha}`, and scripts built on it use 1e-4);
    our default 5e-4 is the top of the 1e-4 to 5e-4 range in our reference notes, and α must
    be tuned per benchmark. No other difference.
    """

    paper = "https://arxiv.org/abs/2304.04934"
    HParams = L1SparseHParams
    search = {"lr": (0.01, 0.03, 0.1), "alpha": (5e-4, 2e-3, 5e-3, 2e-2)}

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: L1SparseHParams = self.hparams
        current = {"epoch": 0}

        def epoch_start(epoch: int) -> None:
            current["epoch"] = epoch

        def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            ce = F.cross_entropy(model(x), y)
            alpha = l1_weight(hp.alpha, current["epoch"], hp.epochs, hp.no_l1_epochs)
            return ce + alpha * l1_norm(model) if alpha > 0 else ce

        phase = Phase(request.require_retain(), loss, hp.batch_size)
        return sgd_fit(request.model, [phase], hp, request, "l1-sparse", epoch_start=epoch_start)
