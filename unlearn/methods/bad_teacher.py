"""Bad Teacher: distil from an incompetent teacher on D_f and from the original model on D_r."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.methods.base import (
    METHODS,
    Fraction,
    Method,
    PositiveFloat,
    PositiveInt,
    UnlearnRequest,
    frozen_copy,
    run_fit,
)
from unlearn.train import Phase


@dataclass(frozen=True)
class BadTeacherHParams:
    """Reference defaults (SSD repo `blindspot`, the bad-teaching authors' code): Adam lr 1e-4, 1 epoch,
    batch 256, 30 % of D_r, KL temperature 1."""

    epochs: PositiveInt = 1
    lr: PositiveFloat = 1e-4
    batch_size: PositiveInt = 256
    retain_fraction: Fraction = 0.3
    temperature: PositiveFloat = 1.0


def unlearning_data(forget: TensorData, retain: TensorData, fraction: float, generator: torch.Generator) -> TensorData:
    """D_f plus a random `fraction` of D_r in one dataset whose `y` is the is-forget flag (1 for D_f, 0 for D_r).

    The class labels are not needed (the loss is pure distillation), so `y` carries the flag
    that picks the teacher; `index` keeps each sample's training-set index.
    """
    keep = int(fraction * len(retain))
    chosen = retain.subset(torch.randperm(len(retain), generator=generator)[:keep].sort().values)
    flag = torch.cat([torch.ones(len(forget), dtype=torch.long), torch.zeros(keep, dtype=torch.long)])
    return forget.concat(chosen).with_labels(flag)


def mixture_kl(student_logits: Tensor, good_logits: Tensor, bad_logits: Tensor, is_forget: Tensor, T: float) -> Tensor:
    """The reference's `UnlearnerLoss`: KL(teacher ‖ student) at temperature T, where the teacher is the
    bad one on forget samples and the good one elsewhere; `kl_div` with its default 'mean' reduction
    (the mean over batch × classes, i.e. the per-sample KL averaged over the batch, divided by C)."""
    flag = is_forget.unsqueeze(1).to(student_logits.dtype)
    teacher = flag * F.softmax(bad_logits / T, dim=1) + (1 - flag) * F.softmax(good_logits / T, dim=1)
    pointwise = F.kl_div(F.log_softmax(student_logits / T, dim=1), teacher, reduction="sum")
    return pointwise / student_logits.numel()


@METHODS.register("bad-teacher")
class BadTeacher(Method):
    """Bad Teacher: distil from a random teacher on D_f and from the original model on 30 % of D_r.

    Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023.
    As the reference (vikram2000b/bad-teaching-unlearning `unlearn.py`: `UnlearnerLoss`,
    `blindspot_unlearner`; run as `blindspot` in the SSD repo's `forget_*_strategies.py`):
    the student (the model being unlearned, train mode) is distilled with KL at T = 1 from
    a mixture teacher: an incompetent teacher (a randomly initialised model of the same
    architecture) for D_f samples and the original model (a frozen copy) for D_r samples,
    both teachers in eval mode. The data are D_f plus a random 30 % (int(0.3·|D_r|)) of
    D_r, merged with an is-forget flag and shuffled together; Adam (no weight decay),
    lr 1e-4, 1 epoch, batch 256. The KL keeps the reference's `kl_div` 'mean' reduction
    (batchmean / C); Adam's update does not depend on this constant factor.

    Deliberate differences: the incompetent teacher is an independent fresh initialisation
    from `request.new_model("bad-teacher")` (derived from the cell seed, never the original
    model's own initialisation), and the retain subset and batch order come from
    generators seeded by the cell seed instead of Python's global `random`.
    """

    paper = "https://arxiv.org/abs/2205.08096"
    HParams = BadTeacherHParams
    search = {"lr": (1e-4, 1e-3, 1e-2), "epochs": (1, 5, 10)}

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: BadTeacherHParams = self.hparams
        good = frozen_copy(request.model)
        bad = frozen_copy(request.new_model("bad-teacher"))
        data = unlearning_data(
            request.forget, request.require_retain(), hp.retain_fraction, request.generator("retain-subset")
        )

        def loss(model: nn.Module, x: Tensor, is_forget: Tensor) -> Tensor:
            with torch.no_grad():
                good_logits, bad_logits = good(x), bad(x)
            return mixture_kl(model(x), good_logits, bad_logits, is_forget, hp.temperature)

        optimizer = torch.optim.Adam(request.model.parameters(), lr=hp.lr)
        phases = [Phase(data, loss, hp.batch_size)]
        return run_fit(request.model, phases, hp.epochs, optimizer, request, "bad-teacher")
