"""GS-LoRA: LoRA adapters on the FFN of every transformer block, trained with a bounded forget loss and a
group-sparse penalty per block, then merged into the weights; for a ViT classifier or a causal language model."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearn.errors import UserError
from unlearn.methods.base import (
    METHODS,
    Method,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    UnlearnRequest,
    run_fit,
)
from unlearn.methods.neggrad_plus import cycle_batches
from unlearn.seeding import derive_seed
from unlearn.train import Phase, cross_entropy

FFN_LAYERS = {
    "vit": r".*encoder_layer_\d+\.mlp\.(0|3)",
    "gpt2": r".*\.h\.\d+\.mlp\.(c_fc|c_proj)",
    "llama": r".*\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
    "gpt-neox": r".*\.layers\.\d+\.mlp\.(dense_h_to_4h|dense_4h_to_h)",
}
"""The FFN layers of every transformer block, by architecture: the benchmark's ViT (`unlearn.models.vit`), GPT-2
(transformers' `Conv1D` layers), and the Llama and GPT-NeoX (Pythia) families (`nn.Linear`), as names inside a
language model (`TwoChoiceLM.lm`). Each name's grandparent is its block (`block_of`)."""

FFN_LINEARS = FFN_LAYERS["vit"]
"""The default `target_modules`: the benchmark ViT's FFN linears, as before language models (a changed default would
change the hash of every committed gs-lora cell); a language benchmark names its architecture's entry of
`FFN_LAYERS` in its spec (benchmarks/tasks-lm.yaml)."""

GROUP_EPS = 1e-8
"""Inside each group's square root: the gradient of sqrt(‖θ_g‖²) is NaN at θ_g = 0 (groups start at ‖A‖ > 0,
but a suppressed group can reach zero)."""

UNTOUCHED = 1e-3
"""A block whose adapted weights move by at most this fraction (relative Frobenius norm of the merged
update) counts as left untouched, its group as zero."""

Terms = Callable[[nn.Module, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor | None]]
"""(model, retain x, retain y, forget x, forget y) -> (GS-LoRA's data loss, a further term or None)."""


@dataclass(frozen=True)
class GSLoRAHParams:
    """Reference defaults (Zhao et al., bjzhb666/GS-LoRA): AdamW lr 1e-2 with a cosine schedule over 100
    epochs, weight decay 0.05 (the reference scripts' timm `create_optimizer` default), β = 0.15 on the
    forget loss, group-sparsity weight α = 0.01 after a 20-epoch warm-up, LoRA rank 8 with loralib's
    `lora_alpha` = 1 (scaling `lora_alpha / rank`) on both FFN linears of every block.

    `bnd` is the bound of the forget loss relu(BND − CE); None (the default) uses 2·ln(C) for C classes:
    the reference's BND of 105-110 is for CosFace logits scaled by 64, a plain softmax head's
    cross-entropy is a few nats. For a two-choice language model C = 2, so BND = 2·ln 2 ≈ 1.39 nats, but
    its CE is the answer tokens' mean next-token NLL over the whole vocabulary, not a two-way choice: the
    forget term stops pushing once a forget batch's answer tokens have a geometric-mean probability below
    1/4, whatever the distractors' probabilities; it does not aim at chance accuracy on the two options. `batch_size` (retain) and `forget_batch_size` are this benchmark's choice (the reference's
    face-recognition batches do not fit few-shot data). `target_modules` is a regular expression that
    must match the whole name of each adapted linear layer (as peft's string `target_modules`); the
    default matches the FFN linears of the benchmark's ViT, and `FFN_LAYERS` gives those of GPT-2 and of
    the Llama and GPT-NeoX families (a language benchmark's spec names one).
    """

    epochs: PositiveInt = 100
    lr: PositiveFloat = 1e-2
    weight_decay: NonNegativeFloat = 0.05
    batch_size: PositiveInt = 64
    forget_batch_size: PositiveInt = 64
    beta: NonNegativeFloat = 0.15
    alpha: NonNegativeFloat = 0.01
    warmup_epochs: NonNegativeInt = 20
    bnd: PositiveFloat | None = None
    rank: PositiveInt = 8
    lora_alpha: PositiveFloat = 1.0
    target_modules: str = FFN_LINEARS


def linear_features(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) features of a linear layer peft's LoRA adapts: `nn.Linear`, or transformers' `Conv1D` (GPT-2's,
    its weight stored in × out); None for any other module."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)  # loaded if a model has one
    if conv1d is not None and isinstance(module, conv1d):
        return module.nx, module.nf
    return None


def targeted_linears(model: nn.Module, pattern: str, rank: int, method: str = "gs-lora") -> dict[str, nn.Module]:
    """The linear layers of `model` whose full name matches `pattern`; UserError if none does, if one is
    not a linear layer or if `rank` exceeds a layer's width."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"{method}: target_modules {pattern!r} is not a regular expression ({exc})") from None
    matched = {name: module for name, module in model.named_modules() if name and regex.fullmatch(name)}
    if not matched:
        raise UserError(
            f"{method}: target_modules {pattern!r} matches no layer of the model (the FFN layers are "
            f"{'; '.join(f'{arch}: {ffn}' for arch, ffn in FFN_LAYERS.items())})"
        )
    for name, module in matched.items():
        features = linear_features(module)
        if features is None:
            raise UserError(f"{method}: target_modules matches {name}, a {type(module).__name__}, not a linear layer")
        if rank > min(features):
            raise UserError(
                f"{method}: rank={rank} exceeds the width {min(features)} of {name} ({features[0]}→{features[1]})"
            )
    return matched


def block_of(layer: str) -> str:
    """A targeted layer's group: its grandparent module, the transformer block holding the FFN (`…mlp.0` → `…`)."""
    return layer.rsplit(".", 2)[0] if layer.count(".") >= 2 else ""


def group_norms(groups: dict[str, list[nn.Parameter]], eps: float = 0.0) -> Tensor:
    """sqrt(Σ‖θ‖²_F + eps) of every group, in group order."""
    return torch.stack([torch.sqrt(sum(p.pow(2).sum() for p in params) + eps) for params in groups.values()])


def block_updates(model: nn.Module, layers: list[str], blocks: list[str]) -> list[float]:
    """For each block, ‖ΔW‖_F / ‖W‖_F over its adapted layers, ΔW the update merging would add (peft's
    `get_delta_weight`)."""
    delta = dict.fromkeys(blocks, 0.0)
    weight = dict.fromkeys(blocks, 0.0)
    for layer in layers:
        module = model.get_submodule(layer)
        delta[block_of(layer)] += float(module.get_delta_weight("default").pow(2).sum())
        weight[block_of(layer)] += float(module.base_layer.weight.pow(2).sum())
    return [(delta[b] / weight[b]) ** 0.5 if weight[b] > 0 else delta[b] ** 0.5 for b in blocks]


@METHODS.register("gs-lora")
class GSLoRA(Method):
    """GS-LoRA: rank-8 LoRA on the FFN linears of every block, only the adapters train, with the loss
    CE(retain) + β·relu(BND − CE(forget)) + α·Σ_blocks sqrt(Σ‖A‖²_F + ‖B‖²_F + eps).

    Zhao et al., "Continual Forgetting for Pre-trained Vision Models", CVPR 2024 (bjzhb666/GS-LoRA,
    `engine_cl.py::train_one_epoch` and `get_structure_loss`). As the reference: one epoch is one pass
    over the retain data in shuffled batches, each paired with the next batch of the forget set cycled
    alongside; the group-sparse term has one group per transformer block (the A and B matrices of both
    FFN linears) and weight 0 for the first `warmup_epochs` epochs, then α; AdamW on the adapters only
    (everything else, the head included, is frozen), cosine schedule stepped once per epoch; at the end
    the adapters are merged into the weights and the plain model returned, so a continual run calls
    the method once per task on the previous task's output and every call starts with fresh adapters.

    Adapters come from peft (`LoraConfig(r, lora_alpha, target_modules=<regex>, lora_dropout=0)`,
    `get_peft_model`, `merge_and_unload`): A Kaiming-uniform, B zero, as loralib, drawn from the global
    generator forked and seeded from the cell seed. A group's norm therefore starts at ‖A‖ > 0, not 0: B = 0 makes the update
    B·A zero at first, and the penalty shrinks A as well, which also starves B's gradient (∝ A), so a
    block the losses do not need stays near its original weights. `request.info` reports the trainable
    fraction (adapter parameters over all parameters, adapters included, as peft counts it), the
    number of groups (`adapter_groups`), each group's final norm (`group_norms`), each block's merged
    update relative to its weights, ‖ΔW‖_F / ‖W‖_F (`block_updates`), and `nonzero_groups`, the blocks
    whose update exceeds 1e-3. The update, a product of B and A, separates used blocks (about 1e-2 to
    1e-1) from suppressed ones (1e-4 and below) in short runs too, where a suppressed group's norm is
    still far from zero (AdamW moves every coordinate by about the learning rate, and A starts at
    ‖A‖ ≈ sqrt(2r/3)); after a full 100-epoch run the two agree (suppressed groups end near 1e-7).
    It also reports the forget bound used (`bnd`).

    CE is the model's own supervised loss (`unlearn.train.cross_entropy`): the classifier's cross-entropy,
    or for a language model (`TwoChoiceLM`) the causal-LM loss of the labelled answer's tokens, so the same
    method adapts the FFN of GPT-2 (`mlp.c_fc`, `mlp.c_proj`, transformers' `Conv1D`, which peft adapts with
    `fan_in_fan_out`) or of a Llama or GPT-NeoX checkpoint, one group per transformer block; the retain
    batches are then the other tasks' items and the fact statements. See the hyperparameters for what the
    default BND means there.

    Deliberate differences: BND defaults to 2·ln(C) (see the hyperparameters); language models are this
    benchmark's extension (the reference adapts ViTs only); the reference's timm
    cosine schedule adds 3 warm-up epochs, a floor of 1e-5 and 10 cool-down epochs, here it is plain
    `CosineAnnealingLR` over `epochs`; eps = 1e-8 inside each square root (the reference has none); the
    reference picks its checkpoint by H on the test set, here the last epoch's model is returned.
    """

    paper = "https://arxiv.org/abs/2403.11530"
    docs = "docs/continual.md#gs-lora-and-gs-lora"
    kinds = ("classification", "language")
    HParams = GSLoRAHParams
    search = {"lr": (3e-3, 1e-2, 3e-2), "beta": (0.05, 0.15, 0.5)}
    label = "gs-lora"

    def check(self, model: nn.Module) -> None:
        hp: GSLoRAHParams = self.hparams
        targeted_linears(model, hp.target_modules, hp.rank, self.label)

    def terms(self, request: UnlearnRequest, bnd: float) -> Terms:
        """The loss on a retain and a forget batch without the group penalty, and a further term (GS-LoRA++'s
        prototypes; None here), built before the adapters are added."""
        beta = self.hparams.beta

        def terms(model: nn.Module, x: Tensor, y: Tensor, x_forget: Tensor, y_forget: Tensor) -> tuple[Tensor, None]:
            value = cross_entropy(model, x, y)
            return value + beta * F.relu(bnd - cross_entropy(model, x_forget, y_forget)), None

        return terms

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        hp: GSLoRAHParams = self.hparams
        model = request.model
        layers = targeted_linears(model, hp.target_modules, hp.rank, self.label)
        retain = request.require_retain()
        bnd = 2 * math.log(request.num_classes) if hp.bnd is None else hp.bnd
        terms = self.terms(request, bnd)
        keys = list(model.state_dict())
        requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}

        conv1d = any(not isinstance(layer, nn.Linear) for layer in layers.values())  # GPT-2's weights are in × out
        config = LoraConfig(r=hp.rank, lora_alpha=hp.lora_alpha, lora_dropout=0.0, target_modules=hp.target_modules,
                            fan_in_fan_out=conv1d)
        cuda = [request.device.index or 0] if request.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(derive_seed(request.seed, "gs-lora"))
            peft_model = get_peft_model(model, config)  # wraps `model` and swaps its targeted linears in place
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
        groups: dict[str, list[nn.Parameter]] = {block_of(layer): [] for layer in layers}
        for name, p in model.named_parameters():
            if p.requires_grad:
                groups[block_of(name.split(".lora_")[0])].append(p)
        lora = [p for params in groups.values() for p in params]
        trainable, total = peft_model.get_nb_trainable_parameters()

        forget_batches = cycle_batches(request.forget, hp.forget_batch_size, request.generator("forget-batches"))
        alpha = [0.0]

        def epoch_start(epoch: int) -> None:
            alpha[0] = 0.0 if epoch < hp.warmup_epochs else hp.alpha

        def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            x_forget, y_forget = next(forget_batches)
            value, extra = terms(model, x, y, x_forget, y_forget)  # two passes, as the reference
            if alpha[0] > 0:
                value = value + alpha[0] * group_norms(groups, GROUP_EPS).sum()
            if extra is not None:
                value = value + extra
            return value

        optimizer = torch.optim.AdamW(lora, lr=hp.lr, weight_decay=hp.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.epochs)
        phase = Phase(retain, loss, hp.batch_size)
        run_fit(model, [phase], hp.epochs, optimizer, request, self.label, epoch_start=epoch_start, scheduler=scheduler)

        with torch.no_grad():
            norms = [float(n) for n in group_norms(groups)]
            updates = block_updates(model, list(layers), list(groups))
        request.info.update(
            trainable_fraction=trainable / total,
            adapter_groups=len(groups),
            nonzero_groups=sum(u > UNTOUCHED for u in updates),
            group_norms=norms,
            block_updates=updates,
            bnd=bnd,
        )
        merged = peft_model.merge_and_unload()
        if list(merged.state_dict()) != keys:
            raise RuntimeError("merging the LoRA adapters changed the model's state_dict keys")
        for name, p in merged.named_parameters():
            p.requires_grad_(requires_grad[name])
        return merged

