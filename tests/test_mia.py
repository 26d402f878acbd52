"""MIA-Efficacy agrees with a direct computation on a hand-made example."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.svm import SVC
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.metrics import Evaluation, evaluate
from unlearn.metrics.mia import svc_mia_efficacy


class ConfidenceModel(nn.Module):
    """Two-class 'model' whose input pixel is the softmax probability it assigns to class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.flatten(1)[:, 0]
        return torch.stack([torch.log(p), torch.log1p(-p)], dim=1)


def split(confidences: list[float]) -> TensorData:
    x = torch.tensor(confidences, dtype=torch.float32).view(-1, 1, 1, 1)
    return TensorData.of(x, torch.zeros(len(confidences), dtype=torch.long))


def test_svc_mia_efficacy_on_separable_confidences():
    members = np.array([0.99, 0.98, 0.97, 0.995, 0.985])
    non_members = np.array([0.30, 0.35, 0.40, 0.45, 0.50])
    targets = np.array([0.99, 0.975, 0.35, 0.42])  # two look like members, two do not
    assert svc_mia_efficacy(members, non_members, targets) == pytest.approx(50.0)


def test_metric_uses_the_first_test_size_retain_samples_and_the_true_label_confidence():
    retain = [0.99, 0.98, 0.97, 0.995, 0.985] + [0.4] * 20  # only the first |test| = 5 are shadow members
    test = [0.30, 0.35, 0.40, 0.45, 0.50]
    forget = [0.99, 0.99, 0.40, 0.40, 0.36]
    ev = Evaluation(ConfidenceModel(), {"retain": split(retain), "test": split(test), "forget": split(forget)})
    value = evaluate(ev, ["mia-efficacy"])["MIA-Efficacy"]

    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(
        np.array(retain[:5] + test).reshape(-1, 1), np.array([1] * 5 + [0] * 5)
    )
    direct = 100.0 * (1 - clf.predict(np.array(forget).reshape(-1, 1)).mean())
    assert value == pytest.approx(direct) == pytest.approx(60.0)

    # Using the whole retain set as shadow members would give a different answer.
    clf_all = SVC(C=3, gamma="auto", kernel="rbf").fit(
        np.array(retain + test).reshape(-1, 1), np.array([1] * len(retain) + [0] * 5)
    )
    assert not math.isclose(100.0 * (1 - clf_all.predict(np.array(forget).reshape(-1, 1)).mean()), value)
