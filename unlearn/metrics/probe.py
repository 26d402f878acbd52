"""Probe recovery: is the forgotten knowledge still linearly decodable from the frozen features?

A method that only hides the head (changes the last layer's mapping) leaves the
forgotten classes separable in the features. A linear probe fitted on frozen features
with true labels finds them again. Following the reference (metrics.md, "Probe recovery"):

- probe-train: the training split with true labels, minus the held-out forgotten samples;
- probe-heldout: for class-wise forgetting the forgotten classes' test images (all of D_f
  may then train the probe, as the attacker knows the class); for random forgetting a
  seeded `holdout` share of D_f, kept out of probe-train;
- features: the penultimate layer (the classifier body's output) and, where the model
  names one, an earlier block's output (4-D maps are averaged over space);
- probe: scikit-learn LogisticRegression (L2, `C`, lbfgs) on standardised features.
  Standardising is our choice (the reference names only L2 logistic regression): it makes
  lbfgs converge in the same number of steps whatever the feature scale of a method.
- optionally (`shots`, our addition) a few-shot probe: fitted on `shots` seeded samples
  per class, averaged over `repeats` draws. On easy data the full probe saturates (on
  digits class-wise, even the oracle's features give 100 %), so it cannot tell a method
  that hid the class behind the head from one that removed it; a few-shot probe still can.

Probe accuracy on the held-out forgotten samples is reported for every model scored
(the unlearned model, and in the record's original/oracle metrics those two models),
and the recovery gap = probe(model) − probe(oracle). The probe splits are built by the
harness; methods never see which samples are held out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.metrics.base import Evaluation, Scores, eval_mode, metric
from unlearn.seeding import generator
from unlearn.spec import ProbeSettings

POINTS = {"penultimate": "", "block": "-Block"}
"""Feature points probed, and the suffix of their metric keys."""


def probe_selection(
    train_labels: Tensor, in_forget: Tensor, forgotten_test_labels: Tensor | None, settings: ProbeSettings, seed: int
) -> tuple[Tensor | None, Tensor | None]:
    """Which training samples train the probe and which are held out, from labels alone (no images copied).

    Returns (probe-train mask or None for all of the training split, held-out training positions or None
    when the forgotten classes' test images are held out). UserError when the splits are too small.
    """
    if forgotten_test_labels is not None:
        check_probe_splits(train_labels, forgotten_test_labels, settings, "the forgotten classes' test images")
        return None, None
    forget_pos = torch.nonzero(in_forget, as_tuple=False).flatten()
    n_held = int(len(forget_pos) * settings.holdout)
    if n_held < 1:
        raise UserError(
            f"probe split too small: holding out {settings.holdout:g} of a {len(forget_pos)}-sample forget set "
            "leaves no held-out forgotten sample (use a larger forget set or evaluation.probe.holdout)"
        )
    order = torch.randperm(len(forget_pos), generator=generator(seed, "probe-holdout")).to(forget_pos.device)
    held = forget_pos[order[:n_held]]
    keep = torch.ones(len(train_labels), dtype=torch.bool, device=in_forget.device)
    keep[held] = False
    check_probe_splits(train_labels[keep], train_labels[held], settings, f"{settings.holdout:g} of D_f")
    return keep, held


def probe_splits(
    train: TensorData,
    in_forget: Tensor,
    test_forgotten: TensorData | None,
    settings: ProbeSettings,
    seed: int,
) -> dict[str, TensorData]:
    """The probe-train and probe-heldout splits of a cell (see the module docstring); UserError if too small."""
    forgotten_labels = test_forgotten.y if test_forgotten is not None else None
    keep, held = probe_selection(train.y, in_forget, forgotten_labels, settings, seed)
    if test_forgotten is not None:
        return {"probe_train": train, "probe_heldout": test_forgotten}
    return {"probe_train": train.where(keep), "probe_heldout": train.subset(held)}


def check_probe_splits(train_labels: Tensor, heldout_labels: Tensor, settings: ProbeSettings, what: str) -> None:
    """Raise UserError unless probe-train holds enough samples (min_per_class, shots) of every class scored on."""
    min_per_class = max(settings.min_per_class, settings.shots or 0)
    if len(heldout_labels) == 0:
        raise UserError(f"probe split too small: no held-out forgotten samples ({what})")
    counts = torch.bincount(train_labels.cpu())
    needed = sorted(set(heldout_labels.cpu().tolist()))
    short = [c for c in needed if c >= len(counts) or int(counts[c]) < min_per_class]
    if short or len(counts.nonzero()) < 2:
        raise UserError(
            f"probe split too small: probe-train needs at least {min_per_class} samples of classes {short or needed} "
            "and two classes in all (evaluation.probe.min_per_class and shots)"
        )


def block_module(model: nn.Module) -> nn.Module | None:
    """The earlier block a model names for probing (`Classifier.probe_block`), or None."""
    name = getattr(model, "probe_block", None)
    return model.get_submodule(name) if name else None


@torch.no_grad()
def features(model: nn.Module, data: TensorData, point: str, batch_size: int) -> np.ndarray:
    """Frozen features of `data` at `point` ("penultimate" or "block"), float64, one row per sample."""
    module = model.body if point == "penultimate" else block_module(model)
    captured: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        out = output.float()
        pooled = {4: lambda: out.mean(dim=(2, 3)), 3: lambda: out.mean(dim=1)}.get(out.dim(), lambda: out.flatten(1))
        captured.append(pooled().cpu())  # conv maps: averaged over space; token sequences: over tokens

    handle = module.register_forward_hook(keep)
    try:
        with eval_mode(model):
            for x, _ in data.batches(batch_size):
                model(x)
    finally:
        handle.remove()
    return torch.cat(captured).double().numpy()


def probe_draws(labels: np.ndarray, settings: ProbeSettings, seed: int) -> list[np.ndarray]:
    """Probe-train positions each probe is fitted on: all of them, or `repeats` seeded draws of `shots` per class."""
    if settings.shots is None:
        return [np.arange(len(labels))]
    draws = []
    for r in range(settings.repeats):
        rng = np.random.default_rng(generator(seed, "probe-shots", str(r)).initial_seed())
        draws.append(
            np.concatenate([rng.choice(np.flatnonzero(labels == c), settings.shots, replace=False)
                            for c in np.unique(labels)])
        )
    return draws


def probe_accuracy(ev: Evaluation, point: str) -> float:
    """Accuracy (%) of linear probes fitted on probe-train features of `ev.model`, scored on probe-heldout."""
    settings: ProbeSettings = ev.settings.get("probe", ProbeSettings())

    def compute() -> float:
        train, held = ev.splits["probe_train"], ev.splits["probe_heldout"]
        draws = probe_draws(train.y.cpu().numpy(), settings, ev.seed)
        used = np.unique(np.concatenate(draws))  # few-shot probes read the features of their draws only
        x_used = features(ev.model, train.subset(used.tolist()), point, ev.batch_size)
        y_used = train.y.cpu().numpy()[used]
        x_held, y_held = features(ev.model, held, point, ev.batch_size), held.y.cpu().numpy()
        from sklearn.linear_model import LogisticRegression  # loaded when a probe runs, not with the registry
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        accuracies = []
        for rows in draws:
            at = np.searchsorted(used, rows)
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=settings.C, max_iter=settings.max_iter))
            probe.fit(x_used[at], y_used[at])
            accuracies.append(100.0 * float((probe.predict(x_held) == y_held).mean()))
        return float(np.mean(accuracies))

    return ev.memoized(("probe", point), compute)


@metric(
    "probe",
    needs=("probe_train", "probe_heldout", "oracle"),
    produces=("Probe-F", "Recovery-Gap"), settings=("probe",)
)
def probe(ev: Evaluation) -> Scores:
    """Linear-probe accuracy on held-out forgotten samples (Probe-F) and the recovery gap to the oracle's probe.

    Also Probe-F-Block and Recovery-Gap-Block when the model names an earlier block.
    """
    oracle: Evaluation = ev.need("oracle")
    settings: ProbeSettings = ev.settings.get("probe", ProbeSettings())
    values: dict[str, float] = {}
    points = [p for p in POINTS if p == "penultimate" or block_module(ev.model) is not None]
    for point in points:
        mine, theirs = probe_accuracy(ev, point), probe_accuracy(oracle, point)
        values[f"Probe-F{POINTS[point]}"] = mine
        values[f"Recovery-Gap{POINTS[point]}"] = mine - theirs
    info = {
        "probe_train": len(ev.splits["probe_train"]),
        "probe_heldout": len(ev.splits["probe_heldout"]),
        "points": {p: ("body output" if p == "penultimate" else ev.model.probe_block) for p in points},
        "probe": f"StandardScaler + LogisticRegression(C={settings.C:g}, l2, lbfgs, max_iter={settings.max_iter})",
        "fitted_on": "all of probe-train" if settings.shots is None
        else f"{settings.shots} per class, mean of {settings.repeats} seeded draws",
    }
    return Scores(values, info)
