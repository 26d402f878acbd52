"""CF-k: catastrophic forgetting of the last k layers (Goel et al.): fine-tune only them on D_r."""

from __future__ import annotations

from unlearn.methods.base import METHODS
from unlearn.methods.last_layers import LastLayers


@METHODS.register("cf-k")
class CFk(LastLayers):
    """CF-k: freeze all but the last k layers and fine-tune those (from their trained values) on D_r with CE.

    As the reference (shash42/Evaluating-Inexact-Unlearning, `src/methods.py`
    `cat_forget_finetune` with K, i.e. `resetFinalResnet(..., reinit=False)`): the last
    k weight layers (and the norms after them) are trained, everything else is frozen,
    with the retraining recipe (same epochs, learning-rate schedule, batch size,
    momentum, weight decay), here the benchmark's `recipe`. k = 1 by default. A "layer"
    is defined in `unlearn.methods.last_layers`.

    Deliberate differences: frozen norms are kept in eval mode, so their running
    statistics do not move (the reference trains in train mode, which updates them,
    unless `--disable-bn`). The reference clips the gradient norm at 10 in every
    training run, original model included; we train like the benchmark's original
    model, without clipping. As the reference, the last epoch's model is returned.
    """

    reinit = False
    name = "cf-k"
