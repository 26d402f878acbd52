"""NPO: Negative Preference Optimization, a bounded alternative to gradient ascent on the forget set."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.methods.base import (
    METHODS,
    Method,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Track,
    UnlearnRequest,
    frozen_copy,
    run_fit,
)
from unlearn.methods.neggrad_plus import cycle_batches
from unlearn.train import Phase, cross_entropy, label_log_likelihood


@dataclass(frozen=True)
class NPOHParams:
    """Reference defaults (locuslab/open-unlearning, `configs/trainer/NPO.yaml` over `GradDiff.yaml` and
    `finetune.yaml`, with the TOFU experiment's overrides): β = 0.1, forget weight γ = 1, retain weight α = 1
    with the NLL retain loss, AdamW at lr 1e-5 with weight decay 0.01, 10 epochs over the forget set, batch 32
    (the scripts' 4 per device × 4 accumulation steps × 2 GPUs).

    `retain=False` drops the retain term: the NPO paper's plain NPO, on the forget-only track.
    """

    epochs: PositiveInt = 10
    lr: PositiveFloat = 1e-5
    batch_size: PositiveInt = 32
    weight_decay: NonNegativeFloat = 0.01
    beta: PositiveFloat = 0.1
    alpha: NonNegativeFloat = 1.0
    gamma: NonNegativeFloat = 1.0
    retain: bool = True


def npo_loss(model: nn.Module, reference: nn.Module, x: Tensor, y: Tensor, beta: float) -> Tensor:
    """NPO's loss of a forget batch: (2/β)·mean softplus(β·(log π_θ(y|x) − log π_ref(y|x))), the reference's
    log-likelihoods taken without gradient (`label_log_likelihood`: log-softmax for a classifier, the answer's
    summed token log-likelihood for a language model)."""
    with torch.no_grad():
        reference_ll = label_log_likelihood(reference, x, y)
    return 2 / beta * F.softplus(beta * (label_log_likelihood(model, x, y) - reference_ll)).mean()


@METHODS.register("npo")
class NPO(Method):
    """NPO: minimise γ·(2/β)·mean softplus(β·log(π_θ/π_ref)) on forget batches plus α·NLL on as many retain batches.

    Zhang, Lin, Bai, Mei, "Negative Preference Optimization: From Catastrophic Collapse to Effective
    Unlearning", 2024. As the reference (open-unlearning `src/trainer/unlearn/npo.py`, `grad_diff.py`,
    `trainer/utils.py::compute_dpo_loss`): the forget term is the DPO loss with only a losing response,
    −(2/β)·log σ(−β·(log π_θ − log π_ref)), written here as softplus; log π is the summed log-likelihood of the
    labelled answer (`compute_batch_nll`'s per-sequence sum; for a classifier, the log-softmax of the label);
    the reference policy π_ref is a frozen copy of the model before unlearning, in eval mode, while the model
    trains in train mode; the retain term is the model's own supervised loss (`cross_entropy`: the token-mean
    causal-LM loss of the true answer for a language model, as the reference's `outputs.loss`); an epoch is one
    pass over the forget set, each forget batch paired with a retain batch of the same size; AdamW on all
    weights. At θ = π_ref each forget term is (2/β)·log 2 and its gradient is exactly gradient ascent's on the
    mean log-likelihood; as π_θ(y|x) falls the weight 2·σ(β·log(π_θ/π_ref)) of that gradient vanishes, so the
    loss stays bounded below where gradient ascent diverges.

    Deliberate differences: the reference draws each forget sample's retain partner uniformly with
    replacement; here retain batches are one endless stream, reshuffled with a generator seeded by the cell
    seed each time it is exhausted (as neggrad-plus pairs them). The learning rate is constant (the MUSE
    experiment's schedule; the TOFU experiment warms up over one epoch, then decays linearly). The reference's
    KL retain loss (`retain_loss_type: KL`) is not offered: its KL runs over the vocabulary of every token,
    which has no counterpart shared by classifiers and the two-choice language models here.
    """

    paper = "https://arxiv.org/abs/2404.05868"
    kinds = ("classification", "language")
    HParams = NPOHParams
    search = {"lr": (1e-5, 1e-4, 1e-3, 1e-2), "beta": (0.1, 0.5)}

    @property
    def track(self) -> Track:
        return Track.FULL if self.hparams.retain else Track.FORGET_ONLY

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: NPOHParams = self.hparams
        model = request.model
        reference = frozen_copy(model)
        retain_batches = None
        if hp.retain:
            retain_batches = cycle_batches(request.require_retain(), hp.batch_size, request.generator("retain-batches"))

        def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            value = hp.gamma * npo_loss(model, reference, x, y, hp.beta)
            if retain_batches is not None:
                x_retain, y_retain = next(retain_batches)
                value = value + hp.alpha * cross_entropy(model, x_retain, y_retain)
            return value

        optimizer = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        phase = Phase(request.require_forget(), loss, hp.batch_size)
        return run_fit(model, [phase], hp.epochs, optimizer, request, "npo")
