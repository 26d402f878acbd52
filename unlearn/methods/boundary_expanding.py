"""BE: boundary expanding (Chen et al., CVPR 2023): train D_f into an extra shadow class, then drop it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.methods.base import METHODS, Method, PositiveFloat, PositiveInt, SGDHParams, Track, UnlearnRequest, sgd_fit
from unlearn.train import Phase


@dataclass(frozen=True)
class BoundaryExpandingHParams(SGDHParams):
    """Reference defaults: 10 epochs, lr 1e-5, batch 256, SGD momentum 0.9, weight decay 5e-4.

    lr 1e-5 and 10 epochs are the original boundary-unlearning code's; the SalUn
    scripts use 1e-6 to 5e-6 on CIFAR-10 and SVHN. Batch size, momentum and weight
    decay are SalUn's (`arg_parser.py`).
    """

    epochs: PositiveInt = 10
    lr: PositiveFloat = 1e-5


def widen(head: nn.Linear, shadow: nn.Linear) -> nn.Linear:
    """A copy of `head` with one more output whose weights are row 0 of `shadow` (a fresh head)."""
    wide = nn.utils.skip_init(
        nn.Linear, head.in_features, head.out_features + 1, bias=head.bias is not None,
        device=head.weight.device, dtype=head.weight.dtype,
    )
    with torch.no_grad():
        wide.weight.copy_(torch.cat([head.weight, shadow.weight[:1]]))
        if head.bias is not None:
            wide.bias.copy_(torch.cat([head.bias, shadow.bias[:1]]))
    return wide


@torch.no_grad()
def narrow(head: nn.Linear, wide: nn.Linear) -> nn.Linear:
    """`head` (in place) set to the first `head.out_features` rows of the trained wide head."""
    head.weight.copy_(wide.weight[: head.out_features])
    if head.bias is not None:
        head.bias.copy_(wide.bias[: head.out_features])
    return head


@METHODS.register("boundary-expanding")
class BoundaryExpanding(Method):
    """BE: widen the head with a shadow class, train D_f towards it with CE, then remove the shadow output.

    As the reference (OPTML-Group Unlearn-Saliency `Classification/unlearn/boundary_ex.py`,
    from the authors' boundary-unlearning code): the head gets a (C+1)-th output (the
    original C rows copied, a freshly initialised row for the shadow class); every
    parameter is trained with SGD on CE(f(x), C) over D_f, model in train mode.
    Forget data only.

    Deliberate differences: the shadow output is removed afterwards (SalUn's version
    forgets to; the authors' original code does remove it): the returned model has the
    original C outputs, the head being the trained head's first C rows. The shadow
    row's initial weights are row 0 of the head of an independent fresh model
    (`request.new_model("boundary-expanding")`, the architecture's own head init; SalUn
    uses nn.Linear's default, the original code Xavier-normal with zero bias), so no
    global RNG is used.
    """

    paper = "https://arxiv.org/abs/2303.11570"
    HParams = BoundaryExpandingHParams
    search = {"lr": (1e-5, 1e-4, 1e-3, 1e-2), "epochs": (5, 10, 20)}

    @property
    def track(self) -> Track:
        return Track.FORGET_ONLY

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        hp: BoundaryExpandingHParams = self.hparams
        model = request.model
        head: nn.Linear = model.head
        shadow_class = head.out_features
        model.head = widen(head, request.new_model("boundary-expanding").head)

        def shadow_loss(m: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(m(x), torch.full_like(y, shadow_class))

        sgd_fit(model, [Phase(request.forget, shadow_loss, hp.batch_size)], hp, request, "boundary-expanding")
        model.head = narrow(head, model.head)
        return model
