"""Diversity of a generator's remaining-class samples, on the judge's features, against real images of each class.

- `Div-r`: per remaining class c, the mean pairwise Euclidean distance between the judge features of the samples
  generated for c, divided by the same mean over the real training images of c; the mean over the classes (per
  class as `Div@<c>`). 1: the samples spread as much as the data; 0: one image per class (mode collapse).
- `Coverage-r`: Naeem et al.'s coverage ("Reliable Fidelity and Diversity Metrics for Generative Models", ICML
  2020), per class, in %: the share of real images of c whose k-nearest-neighbour ball among the real images of c
  (radius: the distance to the k-th nearest other real image, k = `evaluation.diversity.k`, 5 as recommended) holds
  at least one sample generated for c; the mean over the classes (per class as `Coverage@<c>`).

FD and Acc-r do not see a generator that draws each class's most typical image again and again: the judge calls
every sample right, and the features' mean stays near the data's. Div-r does. Coverage-r sees a full collapse, but
it also rises with fidelity: samples packed into the dense core of a class fall inside many real balls, so a
narrowed generator can cover more than a blurry but diverse one (docs/metrics.md gives SFD's figures on
digits-ddpm). Read the two together. Coverage of a sample of the data
itself is below 100 and depends on the sample sizes: with N real and M generated images of a class drawn from the
same distribution its expectation is 1 − C(N − 1, k) / C(N − 1 + M, k) (Naeem et al.); each record keeps that
figure for its sizes as `coverage_of_data`. The samples and judge features are those the `generation` metric
computed (memoised on the evaluation), so the metric costs two distance matrices per class.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from unlearn.errors import UserError
from unlearn.metrics.base import Evaluation, Scores, metric
from unlearn.metrics.generation import GenerationCell, judged, real_features


def mean_pairwise_distance(features: Tensor) -> float:
    """The mean Euclidean distance over all pairs of distinct rows."""
    return float(torch.nn.functional.pdist(features.double()).mean())


def coverage(real: Tensor, fake: Tensor, k: int) -> float:
    """The fraction of `real` rows whose ball of radius "distance to the k-th nearest other real row" holds a row of
    `fake` (strictly inside, as Naeem et al.'s reference code)."""
    real, fake = real.double(), fake.double()
    radius = torch.kthvalue(torch.cdist(real, real), k + 1, dim=1).values  # the k+1-th smallest is past the row itself
    nearest_fake = torch.cdist(real, fake).min(dim=1).values
    return float((nearest_fake < radius).double().mean())


def coverage_of_data(n_real: int, n_fake: int, k: int) -> float:
    """The expected coverage of `n_fake` samples drawn from the distribution of the `n_real` real ones."""
    return 1.0 - math.comb(n_real - 1, k) / math.comb(n_real - 1 + n_fake, k)


@metric("diversity", needs=("judge",), produces=("Div-r", "Coverage-r"), settings=("generation", "diversity"))
def diversity(evaluation: Evaluation) -> Scores:
    """Div-r and Coverage-r over the remaining classes (and per class), on the judge's features."""
    cell: GenerationCell = evaluation.need("judge")
    k = evaluation.settings["diversity"].k
    outputs = judged(evaluation)
    real = real_features(evaluation)
    labels = cell.real.y.cpu()
    out: dict[str, float] = {}
    ratios, covered, expected = [], [], []
    for c in cell.remaining:
        fake, mine = outputs[c][1], real[labels == c]
        if len(fake) < 2 or len(mine) <= k:
            raise UserError(f"the diversity metric needs 2 samples and more than k = {k} real images of each remaining "
                            f"class; class {c} has {len(fake)} and {len(mine)}")
        ratios.append(mean_pairwise_distance(fake) / mean_pairwise_distance(mine))
        covered.append(100.0 * coverage(mine, fake, k))
        expected.append(100.0 * coverage_of_data(len(mine), len(fake), k))
        out[f"Div@{c}"], out[f"Coverage@{c}"] = ratios[-1], covered[-1]
    out["Div-r"] = float(np.mean(ratios))
    out["Coverage-r"] = float(np.mean(covered))
    return Scores(out, {"k": k, "coverage_of_data": float(np.mean(expected))})
