"""Class-conditional DDPM with classifier-free guidance, built on diffusers' UNet2DModel and schedulers.

The reference setup (continual-and-generation.md): ε-prediction, T = 1000 steps, a linear β
schedule 1e-4 → 0.02, one extra "null" label dropped in with probability 0.1 during training,
guidance ε_u + w·(ε_c − ε_u), DDIM sampling. Images enter and leave in [0, 1] like every dataset of
this suite; the network works in [-1, 1].

One deliberate difference from a plain `UNet2DModel(num_class_embeds=C+1)`: the label embedding
table is ours (`labels`, C+1 rows) and is handed to the UNet as a ready vector
(`class_embed_type="identity"`). The network is the same, but a condition can then be any vector,
such as an interpolation between two classes (the generality metric needs that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from unlearn.errors import UserError
from unlearn.models.base import seeded_build
from unlearn.registry import Registry

if TYPE_CHECKING:  # diffusers is imported where a generator is built: it adds ~1.5 s to every classifier run's start
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

TIMESTEPS = 1000
BETA_START = 1e-4
BETA_END = 0.02
P_UNCOND = 0.1
"""Reference schedule and label dropout of the class-conditional DDPM."""


def ddpm_scheduler() -> DDPMScheduler:
    """The training noise schedule (linear β 1e-4 → 0.02 over 1000 steps)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END, beta_schedule="linear")


def ddim_scheduler(steps: int) -> DDIMScheduler:
    """A DDIM sampler over the training schedule with `steps` steps (x0 clipped to [-1, 1], as DDPM's sampler)."""
    from diffusers import DDIMScheduler

    if not 1 <= steps <= TIMESTEPS:
        raise UserError(f"sampler steps must be between 1 and {TIMESTEPS}, got {steps}")
    scheduler = DDIMScheduler(
        num_train_timesteps=TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END, beta_schedule="linear", clip_sample=True
    )
    scheduler.set_timesteps(steps)
    return scheduler


Condition = Tensor
"""Class labels (long, shape (n,); the null label is `num_classes`) or label embeddings (float, (n, d))."""


class ClassConditionalDDPM(nn.Module):
    """ε_θ(x_t, t, c) with a null label for classifier-free guidance, its noise schedule and its sampler.

    `one_step_t` is a buffer, so it travels with the weights: −1 for an ordinary model (DDIM
    sampling), t* for a one-step generator distilled by SFD, whose sample is
    x_g = (x_t* − σ·ε_θ(x_t*, t*, c)) / sqrt(ᾱ_t*) with x_t* = σ·z and σ = sqrt(1 − ᾱ_t*).
    """

    def __init__(self, unet: UNet2DModel, num_classes: int, embed_dim: int):
        super().__init__()
        self.unet = unet
        self.num_classes = num_classes
        self.labels = nn.Embedding(num_classes + 1, embed_dim)
        alphas_cumprod = ddpm_scheduler().alphas_cumprod.to(torch.float32)
        self.register_buffer("alphas_cumprod", alphas_cumprod, persistent=False)
        self.register_buffer("one_step_t", torch.tensor(-1, dtype=torch.long))

    @property
    def null_class(self) -> int:
        """The label of the unconditional model (classifier-free guidance)."""
        return self.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        cfg = self.unet.config
        size = cfg.sample_size if isinstance(cfg.sample_size, int) else tuple(cfg.sample_size)
        h, w = (size, size) if isinstance(size, int) else size
        return int(cfg.in_channels), int(h), int(w)

    @property
    def is_one_step(self) -> bool:
        return int(self.one_step_t) >= 0

    def embed(self, condition: Condition) -> Tensor:
        """Label embeddings of `condition` (labels are looked up; vectors pass through)."""
        return self.labels(condition) if not condition.is_floating_point() else condition

    def forward(self, x_t: Tensor, t: Tensor, condition: Condition) -> Tensor:
        """The predicted noise ε_θ(x_t, t, c) of images x_t in [-1, 1] scale at integer steps t."""
        return self.unet(x_t, t, class_labels=self.embed(condition)).sample

    def guided(self, x_t: Tensor, t: Tensor, condition: Condition, guidance: float) -> Tensor:
        """Classifier-free guided noise ε_u + w·(ε_c − ε_u); w = 1 is the plain conditional model."""
        if guidance == 1.0:
            return self(x_t, t, condition)
        null = torch.full((len(x_t),), self.null_class, dtype=torch.long, device=x_t.device)
        both = self(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([self.embed(condition), self.embed(null)]))
        eps_c, eps_u = both.chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    # -- the forward process ------------------------------------------------------------------------

    def abar(self, t: Tensor) -> Tensor:
        """ᾱ_t, shaped to broadcast over images."""
        return self.alphas_cumprod[t].view(-1, 1, 1, 1)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε (x0 in [-1, 1] scale)."""
        a = self.abar(t)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x̂0 = (x_t − sqrt(1 − ᾱ_t)·ε) / sqrt(ᾱ_t)."""
        a = self.abar(t)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    def noised(self, x: Tensor, gen: torch.Generator, low: int = 0, high: int = TIMESTEPS) -> tuple[Tensor, Tensor, Tensor]:
        """(x_t, t, ε) for images `x` in [0, 1]: t ~ U[low, high), ε ~ N(0, I), drawn from the CPU generator `gen`."""
        noise = torch.randn(x.shape, generator=gen).to(x.device)
        t = torch.randint(low, high, (len(x),), generator=gen).to(x.device)
        return self.add_noise(to_model_scale(x), noise, t), t, noise

    def loss(self, x: Tensor, y: Tensor, gen: torch.Generator, p_uncond: float = P_UNCOND) -> Tensor:
        """The DDPM ε-MSE of images `x` in [0, 1] with labels `y`, each label replaced by null with `p_uncond`."""
        x_t, t, noise = self.noised(x, gen)
        if p_uncond > 0:
            drop = (torch.rand(len(y), generator=gen) < p_uncond).to(y.device)
            y = torch.where(drop, torch.full_like(y, self.null_class), y)
        return nn.functional.mse_loss(self(x_t, t, y), noise)

    # -- sampling ----------------------------------------------------------------------------------

    def one_step(self, z: Tensor, condition: Condition) -> Tensor:
        """The one-step generator's sample (in [-1, 1] scale) from noise `z`, at t* = `one_step_t`."""
        if not self.is_one_step:
            raise RuntimeError("one_step() needs one_step_t set to t* (this model samples with DDIM)")
        t = self.one_step_t.expand(len(z)).to(z.device)
        a = self.abar(t)
        x_t = (1 - a).sqrt() * z
        return (x_t - (1 - a).sqrt() * self(x_t, t, condition)) / a.sqrt()

    @torch.no_grad()
    def sample(self, condition: Condition, steps: int, guidance: float, gen: torch.Generator, eta: float = 0.0) -> Tensor:
        """Images in [0, 1] for each condition: DDIM with `steps` steps and guidance `guidance`, or one step
        for a distilled generator (which then ignores `steps` and `guidance`). Noise comes from `gen` (CPU)."""
        device = self.alphas_cumprod.device
        z = torch.randn((len(condition), *self.image_shape), generator=gen).to(device)
        condition = condition.to(device)
        if self.is_one_step:
            return to_unit_scale(self.one_step(z, condition))
        scheduler = ddim_scheduler(steps)
        x = z
        for t in scheduler.timesteps:
            tt = torch.full((len(x),), int(t), dtype=torch.long, device=device)
            eps = self.guided(x, tt, condition, guidance)
            noise = torch.randn(x.shape, generator=gen).to(device) if eta > 0 else None
            x = scheduler.step(eps, int(t), x, eta=eta, variance_noise=noise).prev_sample
        return to_unit_scale(x)


def to_model_scale(x: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1]."""
    return 2 * x - 1


def to_unit_scale(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)


@dataclass(frozen=True)
class UNetConfig:
    """A UNet2DModel's shape (the arguments that matter here)."""

    block_out_channels: tuple[int, ...]
    layers_per_block: int
    attention_at: tuple[int, ...] = ()
    """Indices of the down blocks with self-attention (and their mirrored up blocks)."""
    mid_attention: bool = False
    dropout: float = 0.0


GeneratorFactory = Callable[[int, tuple[int, int]], UNetConfig]
"""(in_channels, (height, width)) -> the UNet's shape."""

GENERATORS: Registry[GeneratorFactory] = Registry("generator model")


@GENERATORS.register("ddpm-unet")
def ddpm_unet(in_channels: int, image_size: tuple[int, int]) -> UNetConfig:
    """Sized by image side: up to 16 px, (32, 64) without attention (about 0.65 M parameters on 8×8, CPU-trainable);
    above, the published CIFAR-10 DDPM (Ho et al.): 128·(1, 2, 2, 2), two blocks per level, attention at 16×16,
    dropout 0.1, about 35.7 M parameters."""
    h, w = image_size
    if h != w:
        raise UserError(f"ddpm-unet needs square images, got {h}×{w}")
    if h <= 16:
        return UNetConfig((32, 64), layers_per_block=1)
    if h % 8:
        raise UserError(f"ddpm-unet needs an image side divisible by 8 above 16 px, got {h}")
    return UNetConfig((128, 256, 256, 256), layers_per_block=2, attention_at=(1,), mid_attention=True, dropout=0.1)


def build_generator(name: str, in_channels: int, image_size: tuple[int, int], num_classes: int) -> ClassConditionalDDPM:
    """Build the registered generator `name` (weights from the global RNG)."""
    from diffusers import UNet2DModel

    cfg = GENERATORS.get(name)(in_channels, image_size)
    n = len(cfg.block_out_channels)
    down = tuple("AttnDownBlock2D" if i in cfg.attention_at else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if (n - 1 - i) in cfg.attention_at else "UpBlock2D" for i in range(n))
    unet = UNet2DModel(
        sample_size=image_size[0],
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        add_attention=cfg.mid_attention,
        dropout=cfg.dropout,
        norm_num_groups=min(32, cfg.block_out_channels[0]),
        class_embed_type="identity",
    )
    return ClassConditionalDDPM(unet, num_classes, embed_dim=cfg.block_out_channels[0] * 4)


@dataclass(frozen=True)
class GeneratorBlueprint:
    """Everything needed to build a generation benchmark's model; picklable like `Blueprint`."""

    model: str
    in_channels: int
    image_size: tuple[int, int]
    num_classes: int

    def build(self, seed: int, *tags: str, device: torch.device | str = "cpu") -> ClassConditionalDDPM:
        """A fresh model initialised from (seed, "init", *tags); the global RNG is left untouched."""
        return seeded_build(
            lambda: build_generator(self.model, self.in_channels, self.image_size, self.num_classes), seed, tags, device
        )


class DiffusionLoss:
    """The DDPM training objective as a `LossFn` (model, x, y) -> loss, its noise, steps and label dropout drawn
    from its own seeded generator (so that training is reproducible on every device)."""

    def __init__(self, gen: torch.Generator, p_uncond: float = P_UNCOND, sign: float = 1.0):
        self.gen = gen
        self.p_uncond = p_uncond
        self.sign = sign
        """−1 for gradient ascent on the loss."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return self.sign * model.loss(x, y, self.gen, self.p_uncond)
