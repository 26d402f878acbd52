"""Memorisation metrics of a generation benchmark that planted images (`unlearn.data.planted`).

- `memorization`: Extraction, in the style of Carlini et al. ("Extracting Training Data from Diffusion Models"):
  the share (%) of the samples drawn from the planted conditions whose nearest training image (L2 in pixel space,
  over the whole training split, planted copies included) is a planted image within `evaluation.memorization.
  threshold`, a root-mean-square pixel distance (L2 / sqrt(pixels), images in [0, 1]). It reuses the samples the
  `generation` metric draws (`samples_per_class` per condition, the pinned sampler settings, the cell's noise).
  Planted-dist is the median distance (same scale) from those samples to the nearest planted image: a threshold-free
  view of the same thing. Carlini et al. threshold a distance relative to the sample's other neighbours; an absolute
  one suffices here because the planted images are known and the threshold is calibrated on the benchmark (the
  original model extracts, the oracle, which never saw them, does not; docs/generation.md).
- `pruned`: Pruned, the share (%) of the model's parameters that are exactly zero in it but not in the cell's
  original model (switch-off methods prune weights; training methods leave this near 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from unlearn.data.tensors import TensorData
from unlearn.metrics.base import Evaluation, Scores, metric
from unlearn.metrics.generation import samples


@dataclass(frozen=True)
class Planted:
    """What the extraction rate reads besides the samples: the whole training split and the planted condition ids."""

    train: TensorData
    planted: tuple[int, ...]

    def planted_rows(self) -> Tensor:
        """Booleans over the training split: True for the copies of planted images."""
        return torch.isin(self.train.y, torch.as_tensor(self.planted, device=self.train.y.device))


def rms_distances(a: Tensor, b: Tensor) -> Tensor:
    """Root-mean-square pixel distance between every row of `a` and every row of `b` (images, flattened)."""
    a, b = a.flatten(1).float(), b.flatten(1).float().to(a.device)
    return torch.cdist(a, b) / a.shape[1] ** 0.5


def extraction(images: Tensor, planted: Planted, threshold: float) -> tuple[Tensor, Tensor]:
    """(extracted, distance to the nearest planted image) per image: extracted when its nearest training image is a
    planted copy at most `threshold` away."""
    d = rms_distances(images, planted.train.x)
    nearest, which = d.min(dim=1)
    is_planted = planted.planted_rows().to(which.device)
    extracted = is_planted[which] & (nearest <= threshold)
    return extracted.cpu(), d[:, is_planted].min(dim=1).values.cpu()


@metric("memorization", needs=("judge", "planted"), produces=("Extraction", "Planted-dist"),
        settings=("generation", "memorization"))
def memorization(evaluation: Evaluation) -> Scores:
    """The extraction rate of the planted conditions' samples, and their median distance to the planted images."""
    planted: Planted = evaluation.need("planted")
    threshold = evaluation.settings["memorization"].threshold
    made = samples(evaluation)
    images = torch.cat([made.images[c] for c in planted.planted])
    extracted, distance = extraction(images, planted, threshold)
    out = {"Extraction": 100.0 * float(extracted.float().mean()), "Planted-dist": float(distance.median())}
    return Scores(out, {"threshold": threshold, "samples": len(images), "planted": len(planted.planted),
                        "train_images": len(planted.train)})


@metric("pruned", needs=("original",), produces=("Pruned",))
def pruned(evaluation: Evaluation) -> Scores:
    """% of parameters that are exactly zero in this model and not in the original (matched by name)."""
    original = dict(evaluation.need("original").model.named_parameters())
    zeroed = total = 0
    with torch.no_grad():
        for name, p in evaluation.model.named_parameters():
            total += p.numel()
            before = original.get(name)
            if before is not None and before.shape == p.shape:
                zeroed += int(((p == 0) & (before.to(p.device) != 0)).sum())
    return Scores({"Pruned": 100.0 * zeroed / total if total else 0.0}, {"parameters": total})
