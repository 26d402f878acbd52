"""A small mixture-of-experts classifier: flatten -> embedding -> two top-2 MoE layers of MLP experts -> classes.

Two registered variants: `moe`, whose MoE layers output only the gated sum of their chosen experts, and
`moe-residual`, which adds it to the layer's input (x + Σ g·expert(x)), as transformer MoE blocks do.
Measured on digits (class:3, seed 100): switching off the two experts most distinctive of the class
drops its test accuracy from 97 % to 0 % in `moe` (94.7 % on the other classes), but leaves it at 97 %
in `moe-residual`, whose skip path carries the class past the experts (k up to 6: at least 94.6 %).

The router is part of the model. Each MoE layer's router is a Linear giving one logit per expert and a
persistent buffer `route_bias` (zeros after training) that is added to the logits for choosing the top-2
experts only; the gate weights are the softmax of the router's own logits over the chosen experts. Setting
an expert's bias to `-SWITCH` switches it off (never chosen while two others are left) and `+SWITCH` forces
it on (always chosen while at most two are forced), so an unlearned model is an ordinary state dict.

`SWITCH` is a large finite number, not infinity: the harness refuses non-finite weights and buffers (a
diverged model), and safetensors stores finite floats exactly. Router logits of these models are a few
units, so 1e4 decides every choice; among several forced experts of one layer the float32 sum resolves
logit differences of about 1e-3 (a closer pair may be ordered either way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from unlearn.models.base import MODELS

WIDTH = 128
"""Width of the embedding and of each layer's residual stream."""
EXPERTS = 8
TOP_K = 2
EXPERT_HIDDEN = 128
MOE_LAYERS = 2
SWITCH = 1.0e4
"""The route_bias magnitude that switches an expert off (-SWITCH) or forces it on (+SWITCH)."""


@dataclass(frozen=True)
class Routing:
    """One MoE layer's routing of a batch."""

    selected: Tensor
    """N × top_k indices of the chosen experts."""
    gates: Tensor
    """N × top_k gate weights of the chosen experts (softmax of their router logits; rows sum to 1)."""
    logits: Tensor
    """N × E router logits (without route_bias)."""


class Routed(Protocol):
    """A layer whose experts are chosen by a router: what routing-based methods read and change.

    Recognised by `is_routed` (duck typing: a model from a plugin qualifies without importing this module).
    """

    route_bias: Tensor
    num_experts: int
    top_k: int

    def route(self, x: Tensor) -> Routing: ...


class Expert(nn.Sequential):
    """A two-layer ReLU MLP."""

    def __init__(self, width: int, hidden: int):
        super().__init__(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))


class MoELayer(nn.Module):
    """Σ_{e in top-k} g_e · expert_e(x) (plus x if `residual`): the router chooses k of E experts per sample."""

    def __init__(self, width: int, num_experts: int, top_k: int, hidden: int, residual: bool = False):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k={top_k} must lie in 1..{num_experts}")
        self.num_experts, self.top_k, self.residual = num_experts, top_k, residual
        self.router = nn.Linear(width, num_experts)
        self.experts = nn.ModuleList(Expert(width, hidden) for _ in range(num_experts))
        self.register_buffer("route_bias", torch.zeros(num_experts))

    def route(self, x: Tensor) -> Routing:
        """The routing of inputs `x` (N × width): top-k of logits + route_bias, gates from the logits alone."""
        logits = self.router(x)
        selected = (logits + self.route_bias).topk(self.top_k, dim=1).indices
        gates = logits.gather(1, selected).softmax(dim=1)
        return Routing(selected, gates, logits)

    def forward(self, x: Tensor) -> Tensor:
        routing = self.route(x)
        outputs = torch.stack([expert(x) for expert in self.experts], dim=1)  # N × E × width
        index = routing.selected.unsqueeze(-1).expand(-1, -1, outputs.shape[-1])
        chosen = outputs.gather(1, index)  # N × top_k × width
        mixed = (routing.gates.unsqueeze(-1) * chosen).sum(dim=1)
        return x + mixed if self.residual else mixed


def moe_classifier(
    in_channels: int, image_size: tuple[int, int], num_classes: int, residual: bool
) -> tuple[nn.Module, nn.Linear, str]:
    """Flatten, a 128-unit ReLU embedding, two MoE layers (8 two-layer MLP experts of 128 hidden units, top-2
    routing), a LayerNorm and a linear head (64->128->MoE->MoE->10 on digits; MNIST-1D's 1×40 sequences
    flatten to 40). Probes read the first MoE layer's output as the earlier block."""
    h, w = image_size
    body = nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * h * w, WIDTH),
        nn.ReLU(),
        *(MoELayer(WIDTH, EXPERTS, TOP_K, EXPERT_HIDDEN, residual) for _ in range(MOE_LAYERS)),
        nn.LayerNorm(WIDTH),
    )
    return body, nn.Linear(WIDTH, num_classes), "3"


@MODELS.register("moe")
def moe(in_channels: int, image_size: tuple[int, int], num_classes: int) -> tuple[nn.Module, nn.Linear, str]:
    """The MoE classifier whose layers output only their experts' gated sum (see `moe_classifier`)."""
    return moe_classifier(in_channels, image_size, num_classes, residual=False)


@MODELS.register("moe-residual")
def moe_residual(in_channels: int, image_size: tuple[int, int], num_classes: int) -> tuple[nn.Module, nn.Linear, str]:
    """The MoE classifier with residual MoE layers, x + Σ g·expert(x) (see `moe_classifier`)."""
    return moe_classifier(in_channels, image_size, num_classes, residual=True)


def is_routed(module: nn.Module) -> bool:
    """Whether `module` has the `Routed` attributes (a buffer lives in `_buffers`, which a runtime-checkable
    Protocol's static attribute lookup would miss, so this checks by `getattr`)."""
    return (
        isinstance(getattr(module, "route_bias", None), Tensor)
        and isinstance(getattr(module, "num_experts", None), int)
        and isinstance(getattr(module, "top_k", None), int)
        and callable(getattr(module, "route", None))
    )


def routed_layers(model: nn.Module) -> list[tuple[str, Routed]]:
    """The model's routed layers in registration (forward) order, with their qualified names."""
    return [(name, module) for name, module in model.named_modules() if is_routed(module)]  # type: ignore[misc]
