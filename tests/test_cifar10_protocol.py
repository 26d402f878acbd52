"""The cifar10-resnet18 benchmark (the SalUn table's CIFAR-10 protocol) and fit's mixed-precision switch.

The protocol is checked as written in the spec, then run end to end on CPU on a tiny fake
CIFAR-10 in torchvision's on-disk format (recipe and methods shrunk to one epoch). CUDA's
mixed precision cannot run here: the tests pin down that CPU refuses it and that the CPU
path computes exactly what the plain float32 loop computes.
"""

from __future__ import annotations

import json
from pathlib import Path

import fake_torchvision as fake
import numpy as np
import pytest
import torch
import torchvision.datasets
import yaml
from torch import nn

from unlearn.cli import main
from unlearn.data import load_dataset
from unlearn.data.tensors import TensorData
from unlearn.data.torchvision_sets import VAL_FRACTION
from unlearn.models import Blueprint
from unlearn.spec import load_benchmark
from unlearn.train import (
    Phase,
    _MixedPrecision,
    clip_gradients,
    crop_flip,
    cross_entropy,
    fit,
    sgd,
    use_mixed_precision,
)

BENCHMARK = "cifar10-resnet18"
CIFAR10_TRAIN_PER_CLASS, CIFAR10_TEST = 5000, 10000
"""The real CIFAR-10: 5000 training images per class, 10000 test images."""


def install_fake_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch) -> fake.FakeSplits:
    """Write the fake CIFAR-10 under `root` and point torchvision's md5 table at its files."""
    written = fake.write_cifar10(root)
    for attr, value in fake.cifar_md5s(root, torchvision.datasets.CIFAR10).items():
        monkeypatch.setattr(torchvision.datasets.CIFAR10, attr, value)
    return written


def test_spec_is_the_salun_protocol() -> None:
    """Data, model, recipe and grid are the published protocol's, and the methods run with reference defaults."""
    spec = load_benchmark(BENCHMARK)
    assert (spec.dataset, spec.model, spec.kind) == ("cifar10", "resnet18", "classification")
    recipe = spec.train
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.momentum, recipe.weight_decay) == (182, 256, 0.1, 0.9, 5e-4)
    assert (recipe.schedule, recipe.milestones, recipe.gamma) == ("multistep", [91, 136], 0.1)
    assert (recipe.optimizer, recipe.augment, recipe.max_grad_norm) == ("sgd", "crop-flip", None)
    assert spec.grid.forget == ["random:0.1", "class:0"] and spec.grid.seeds == [0, 1, 2]
    assert spec.grid.methods == load_benchmark("digits").grid.methods
    assert spec.hparams == {}
    assert {"accuracy", "mia-efficacy"} <= set(spec.metrics)
    assert spec.gap_metrics == ["UA", "RA", "TA", "MIA-Efficacy"]

    model = Blueprint(spec.model, 3, (32, 32), 10, (0.5,) * 3, (0.25,) * 3).build(0)
    conv1 = model.body.conv1
    assert (conv1.kernel_size, conv1.stride, conv1.padding, conv1.in_channels) == ((3, 3), (1, 1), (1, 1), 3)
    assert isinstance(model.body.maxpool, nn.Identity)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_loader_splits_45k_5k_10k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader holds out round(10 %) of each class as validation and keeps the official test set: the fake's
    proportions, and by the same rule 45k/5k/10k on the real CIFAR-10."""
    written = install_fake_cifar10(tmp_path, monkeypatch)
    ds = load_dataset("cifar10", tmp_path, False)
    val_counts = tuple(np.bincount(ds.val.y.numpy(), minlength=10))
    assert val_counts == fake.EXPECTED_VAL_COUNTS
    assert val_counts == tuple(round(VAL_FRACTION * n) for n in fake.TRAIN_COUNTS)
    assert len(ds.train) + len(ds.val) == len(written.train_y) and len(ds.test) == len(written.test_y)
    assert torch.equal(ds.test.y, torch.as_tensor(written.test_y))
    real_val = 10 * round(VAL_FRACTION * CIFAR10_TRAIN_PER_CLASS)
    assert (10 * CIFAR10_TRAIN_PER_CLASS - real_val, real_val, CIFAR10_TEST) == (45000, 5000, 10000)


def test_runs_end_to_end_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> None:
    """`unlearn run` on the spec (recipe shrunk to one epoch) trains ResNet-18 on fake CIFAR-10 and writes ok records."""
    data_root = tmp_path / "datasets"
    install_fake_cifar10(data_root, monkeypatch)
    source = yaml.safe_load((Path(__file__).parents[1] / "benchmarks" / f"{BENCHMARK}.yaml").read_text(encoding="utf-8"))
    source["train"].update(epochs=2, milestones=[1])  # the protocol otherwise unchanged: ResNet-18, batch 256, crop-flip, every metric
    spec_path = tmp_path / f"{BENCHMARK}.yaml"
    spec_path.write_text(yaml.safe_dump(source), encoding="utf-8")
    workdir = tmp_path / "work"
    code = main([
        "run", "--benchmark", str(spec_path), "--data-root", str(data_root), "--workdir", str(workdir),
        "--cache-dir", str(shared_cache), "--methods", "retrain,finetune,random-label", "--forget", "random:0.1",
        "--seeds", "0", "--device", "cpu", "--hparam", "finetune.epochs=1", "--hparam", "random-label.epochs=1",
        "--no-progress",
    ])
    assert code == 0
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((workdir / "data" / "runs").rglob("*.json"))]
    assert sorted(r["method"] for r in records) == ["finetune", "random-label", "retrain"]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert all(r["benchmark"] == BENCHMARK and r["forget"]["spec"] == "random:0.1" for r in records)
    assert all({"UA", "RA", "TA", "Probe-F", "Relearn-Steps"} <= set(r["metrics"]) for r in records), \
        [sorted(r["metrics"]) for r in records]
    # MIA-Efficacy is a number, or undefined with the reason (a barely trained model on fake data may leave the
    # attack nothing to separate: docs/metrics.md)
    assert all("MIA-Efficacy" in r["metrics"] or r["undefined"]["method"]["MIA-Efficacy"] for r in records)


def _tiny_run(fit_kwargs: dict[str, object] | None) -> dict[str, torch.Tensor]:
    """Train a small conv net for two epochs with crop-flip, cosine schedule and clipping; its final weights.

    With `fit_kwargs` None, the loop is written out by hand (what `fit` did before mixed precision existed)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 4))
    gen = torch.Generator().manual_seed(1)
    data = TensorData.of(torch.rand(40, 3, 8, 8, generator=gen), torch.randint(0, 4, (40,), generator=gen))
    optimizer = sgd(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2)
    clip = clip_gradients(1.0)
    generator = torch.Generator().manual_seed(2)
    if fit_kwargs is not None:
        fit(model, [Phase(data, cross_entropy, 16, augment=crop_flip)], epochs=2, optimizer=optimizer,
            scheduler=scheduler, generator=generator, before_step=clip, **fit_kwargs)
        return {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    for _ in range(2):
        for x, y in data.batches(16, shuffle=True, generator=generator):
            loss = cross_entropy(model, crop_flip(x, generator), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip(model, optimizer)
            optimizer.step()
        scheduler.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_cpu_fit_is_plain_float32_and_refuses_mixed_precision() -> None:
    """On CPU mixed precision is off by default and refused on request; fit's numbers equal the plain loop's."""
    cpu = torch.device("cpu")
    assert not use_mixed_precision(cpu) and not use_mixed_precision(cpu, False)
    with pytest.raises(ValueError, match="CUDA only"):
        use_mixed_precision(cpu, True)
    with pytest.raises(ValueError, match="CUDA only"):
        _tiny_run({"mixed_precision": True})

    plain = _tiny_run(None)
    for kwargs in ({}, {"mixed_precision": None}, {"mixed_precision": False}):
        weights = _tiny_run(kwargs)
        assert weights.keys() == plain.keys()
        assert all(torch.equal(weights[k], plain[k]) for k in plain), kwargs


def test_channels_last_keeps_the_parameters_the_optimizer_holds() -> None:
    """The mixed-precision path's layout switch changes memory format only: same Parameter objects, same values,
    channels-last inside and plain layout again afterwards."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 3, 6, 6))
    before = [(p, p.detach().clone()) for p in model.parameters()]
    amp = _MixedPrecision.__new__(_MixedPrecision)  # __init__ asks CUDA about bfloat16: only the layout part runs
    amp.model = model
    with amp:
        conv = model[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        assert amp.inputs(torch.rand(2, 3, 6, 6)).is_contiguous(memory_format=torch.channels_last)
    assert [p for p in model.parameters()] == [p for p, _ in before]
    assert all(p.is_contiguous() and torch.equal(p, v) for p, v in before)


@pytest.mark.parametrize("fields", [
    {"schedule": "multistep"},
    {"schedule": "multistep", "milestones": [136, 91]},
    {"schedule": "multistep", "milestones": [182]},
    {"schedule": "cosine", "milestones": [91]},
])
def test_a_multistep_schedule_needs_increasing_milestones_inside_the_run(fields):
    from pydantic import ValidationError

    from unlearn.spec import Recipe

    with pytest.raises(ValidationError, match="milestones"):
        Recipe(epochs=182, batch_size=256, lr=0.1, **fields)


def test_the_multistep_schedule_divides_the_learning_rate_after_each_milestone():
    from unlearn.spec import Recipe
    from unlearn.train import recipe_optimizer

    recipe = Recipe(epochs=5, batch_size=8, lr=0.1, schedule="multistep", milestones=[2, 4])
    optimizer, scheduler = recipe_optimizer([torch.nn.Parameter(torch.zeros(1))], recipe)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_recipe_fields_added_later_leave_older_hashes_alone():
    """Model keys and serialised recipes (inside record configs) omit later fields at their defaults, so adding a
    field does not invalidate cached models or finished records."""
    from unlearn.spec import Recipe

    plain = Recipe(epochs=30, batch_size=64, lr=0.05)
    assert "milestones" not in plain.model_dump() and "gamma" not in plain.model_dump()
    assert set(plain.key()) == {"epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "augment"}
    stepped = Recipe(epochs=30, batch_size=64, lr=0.05, schedule="multistep", milestones=[10, 20], gamma=0.2)
    assert stepped.model_dump()["milestones"] == [10, 20] and stepped.key()["gamma"] == 0.2
