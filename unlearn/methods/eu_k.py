"""EU-k: exact unlearning of the last k layers (Goel et al.): re-initialise them and retrain them on D_r."""

from __future__ import annotations

from unlearn.methods.base import METHODS
from unlearn.methods.last_layers import LastLayers


@METHODS.register("eu-k")
class EUk(LastLayers):
    """EU-k: re-initialise the last k layers, freeze the rest, train the last k layers on D_r with CE.

    As the reference (shash42/Evaluating-Inexact-Unlearning, `src/methods.py`
    `retrain_lastK` / `resetFinalResnet`): walking the Conv/BatchNorm/Linear modules
    backwards from the head, the last k weight layers (and the norms after them) are
    unfrozen, everything else is frozen; the weight layers are re-initialised; training
    uses the retraining recipe (same epochs, learning-rate schedule, batch size,
    momentum, weight decay), here the benchmark's `recipe`. k = 1 by default. A "layer"
    is defined in `unlearn.methods.last_layers` (a parametrised module with the norms
    that follow it; the head is the last).

    Deliberate differences: the re-initialised values are copied from an independent
    fresh model (`request.new_model("eu-k")`), not drawn by `_reinit` from the global
    RNG; the norms of the retrained layers are re-initialised too (parameters and
    running statistics; the reference re-initialises only Conv/Linear weights and keeps
    the trained BatchNorm, which still carries information about D_f); frozen norms
    are kept in eval mode, so their running statistics do not move (the reference
    trains in train mode, which updates them, unless `--disable-bn`). The reference
    clips the gradient norm at 10 in every training run, original model included; we
    train like the benchmark's original model, without clipping. As the reference,
    the last epoch's model is returned.
    """

    reinit = True
    name = "eu-k"
