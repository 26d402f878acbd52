"""torchvision's VisionTransformer, sized by image side: a small ViT for 8×8 digits, standard sizes above."""

from __future__ import annotations

from torch import nn

from unlearn.errors import UserError
from unlearn.models.base import MODELS

VIT_SIZES = (
    # (largest image side, patch, layers, heads, hidden, MLP width)
    (16, 2, 4, 4, 64, 128),  # digits 8×8: 16 patches of 2×2, 0.14 M parameters
    (64, 4, 12, 3, 192, 768),  # 28-64 px (MNIST, CIFAR 32×32): ViT-Tiny depth and widths, 4×4 patches
    (10**9, 16, 12, 12, 768, 3072),  # larger (224 px): ViT-B/16
)


@MODELS.register("vit")
def vit(in_channels: int, image_size: tuple[int, int], num_classes: int) -> tuple[nn.Module, nn.Linear, str]:
    """A ViT from `torchvision.models.VisionTransformer`: class token, pre-norm blocks, GELU MLPs.

    Sizes by the image side (square images only): up to 16 px, patch 2, 4 blocks of width
    64 with 4 heads and MLP width 128; up to 64 px, ViT-Tiny (patch 4, 12 blocks, width
    192, 3 heads, MLP 768); above, ViT-B/16. The patch embedding takes `in_channels`. The
    body ends at the class token's final LayerNorm output; the head is a separate linear
    layer. The FFN linears of block i are `body.encoder.layers.encoder_layer_<i>.mlp.0` and
    `.mlp.3` (GS-LoRA's targets). Probes read the middle block's tokens (averaged).
    """
    import torchvision

    h, w = image_size
    if h != w:
        raise UserError(f"the vit model needs square images, not {h}×{w}")
    _, patch, layers, heads, hidden, mlp = next(size for size in VIT_SIZES if h <= size[0])
    if h % patch:
        raise UserError(f"the vit model's {patch}×{patch} patches do not tile {h}×{w} images")
    net = torchvision.models.VisionTransformer(
        image_size=h, patch_size=patch, num_layers=layers, num_heads=heads, hidden_dim=hidden, mlp_dim=mlp,
        num_classes=num_classes,
    )
    net.conv_proj = nn.Conv2d(in_channels, hidden, kernel_size=patch, stride=patch)
    net.heads = nn.Identity()
    return net, nn.Linear(hidden, num_classes), f"encoder.layers.encoder_layer_{layers // 2 - 1}"
