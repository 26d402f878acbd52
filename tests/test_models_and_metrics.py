"""Model factories and the one-forward-pass-per-split evaluation."""

from __future__ import annotations

import torch
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.metrics import Evaluation, evaluate
from unlearn.models import build_model


def test_resnet18_has_the_cifar_stem_and_a_separate_head():
    torch.manual_seed(0)
    model = build_model("resnet18", 3, (32, 32), 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    conv1 = model.body.conv1
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(model.body.maxpool, nn.Identity) and isinstance(model.body.fc, nn.Identity)
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 10) and model.features(x).shape == (2, 512)


def test_small_cnn_fits_8x8_inputs():
    torch.manual_seed(0)
    model = build_model("small-cnn", 1, (8, 8), 10, (0.3,), (0.4,))
    assert model(torch.rand(4, 1, 8, 8)).shape == (4, 10)
    assert model.body[6].in_features == 512  # 32 channels × 4 × 4 after pooling


class CountingModel(nn.Module):
    """A linear classifier that counts the samples it has been run on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.linear(x.flatten(1))


def test_all_metrics_share_one_forward_pass_per_split():
    torch.manual_seed(0)

    def split(n: int) -> TensorData:
        return TensorData.of(torch.rand(n, 1, 8, 8), torch.randint(0, 10, (n,)))

    splits = {"forget": split(30), "retain": split(200), "val": split(40), "test": split(50)}
    model = CountingModel()
    scores = evaluate(Evaluation(model, splits, batch_size=64), ["accuracy", "mia-efficacy"])
    assert {"UA", "RA", "TA", "VA"} <= set(scores.values)
    # random data: shadow members and non-members are alike, so the attack ran and found itself undefined
    assert "MIA-Efficacy" not in scores.values and "chance" in scores.info["mia-efficacy"]["undefined"]
    assert model.seen == sum(len(s) for s in splits.values())
