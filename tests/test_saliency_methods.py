"""Saliency masks and the SalUn family: salun, salun-soft, l1-sparse."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_grid, make_request

import unlearn.methods.base as methods_base
import unlearn.methods.l1_sparse as l1_module
import unlearn.methods.salun_soft as soft_module
from unlearn.errors import UserError
from unlearn.forget import ForgetSpec, load_or_build
from unlearn.harness import Workspace
from unlearn.methods import METHODS, make_hparams
from unlearn.saliency import SaliencyMask
from unlearn.train import negative_cross_entropy


@pytest.fixture(scope="module")
def class3(digits_spec, digits_kind, shared_cache, tmp_path_factory):
    """(trained digits model, class:3 splits) for the whole module."""
    workspace = Workspace.at(tmp_path_factory.mktemp("saliency") / "work", cache_dir=shared_cache)
    runner = make_grid(digits_spec, digits_kind, workspace, ["finetune"], ["class:3"], [0])
    manifest = load_or_build(workspace.forget_dir, ForgetSpec.parse("class:3"), digits_kind.dataset, 0)
    return runner.models.load_or_train_original(0).model, digits_kind.splits(manifest)


def accuracy(model, data) -> float:
    model.eval()
    with torch.no_grad():
        return (model(data.x).argmax(1) == data.y).float().mean().item()


def run(digits_kind, name, original, splits, monkeypatch=None, **hparams):
    """Run method `name` on a copy of `original`; returns (model, optimizer used)."""
    optimizers = []
    if monkeypatch is not None:
        real_sgd = methods_base.sgd

        def spy_sgd(*args, **kwargs):
            optimizers.append(real_sgd(*args, **kwargs))
            return optimizers[-1]

        monkeypatch.setattr(methods_base, "sgd", spy_sgd)
    cls = METHODS.get(name)
    request = make_request(digits_kind, copy.deepcopy(original), splits["forget"], splits["retain"])
    model = cls(make_hparams(cls, name, hparams)).unlearn(request)
    return model, (optimizers[0] if optimizers else None)


# ---------------------------------------------------------------- the mask


def independent_top_mask(model, data, ratio, batch_size):
    """The reference recipe written out separately: .grad accumulation in eval mode, numpy stable ranking."""
    model = copy.deepcopy(model).eval()
    model.zero_grad(set_to_none=True)
    for start in range(0, len(data), batch_size):
        x, y = data.x[start : start + batch_size], data.y[start : start + batch_size]
        (-F.cross_entropy(model(x), y)).backward()
    params = dict(model.named_parameters())
    flat = np.concatenate([params[k].grad.abs().flatten().numpy() for k in params])
    keep = np.zeros(flat.size, dtype=bool)
    keep[np.argsort(-flat, kind="stable")[: int(flat.size * ratio)]] = True
    out, start = {}, 0
    for k, p in params.items():
        out[k] = torch.from_numpy(keep[start : start + p.numel()].reshape(p.shape))
        start += p.numel()
    return out


@pytest.mark.parametrize("ratio", [0.1, 0.5, 1.0])
def test_the_mask_keeps_exactly_the_top_gradient_entries_over_all_parameters(class3, ratio):
    original, splits = class3
    model = copy.deepcopy(original)
    mask = SaliencyMask.compute(model, splits["forget"], negative_cross_entropy, ratio, batch_size=50)
    expected = independent_top_mask(original, splits["forget"], ratio, 50)
    n = sum(p.numel() for p in original.parameters())
    assert list(mask.masks) == [name for name, _ in original.named_parameters()]  # BN/bias/head all included
    assert mask.kept() == int(n * ratio) and mask.total() == n
    for name, m in mask.masks.items():
        assert m.dtype == torch.bool and torch.equal(m, expected[name]), name
    assert mask.ratio == ratio and mask.metadata == {"loss": "negative_cross_entropy", "batch_size": 50, "samples": 128}
    assert mask.kept_fraction() == pytest.approx(ratio, abs=1 / n)
    rows = mask.summary()
    assert [r.name for r in rows] == list(mask.masks) and sum(r.kept for r in rows) == mask.kept()
    assert rows[0].shape == tuple(original.body[0].weight.shape) and rows[0].fraction == rows[0].kept / rows[0].total
    for a, b in zip(model.parameters(), original.parameters(), strict=True):
        assert torch.equal(a, b)  # computing a mask does not step any optimiser


def test_ties_go_to_the_earlier_entry_and_the_count_is_int_ratio_n():
    grads = {"a": torch.tensor([1.0, -2.0, 2.0]), "b": torch.tensor([[2.0, 0.0]])}
    mask = SaliencyMask.from_gradients(grads, 0.5)  # int(5 · 0.5) = 2 of the three |g| = 2
    assert mask.masks["a"].tolist() == [False, True, True] and mask.masks["b"].tolist() == [[False, False]]
    assert SaliencyMask.from_gradients(grads, 0.7).kept() == 3  # int(3.5)
    with pytest.raises(UserError, match="keeps no entry"):
        SaliencyMask.from_gradients(grads, 0.1)
    with pytest.raises(UserError, match=r"\(0, 1\]"):
        SaliencyMask.from_gradients(grads, 1.5)


def test_compute_runs_in_eval_mode_and_restores_every_module_mode(class3):
    original, splits = class3
    model = copy.deepcopy(original).train()
    model.head.eval()  # a mixed state must come back as it was
    modes = []

    def loss(m, x, y):
        modes.append(any(module.training for module in m.modules()))
        return -F.cross_entropy(m(x), y)

    SaliencyMask.compute(model, splits["forget"], loss, 0.5, batch_size=64)
    assert modes == [False, False]
    assert model.training and model.body.training and not model.head.training


def test_save_load_round_trips_bit_exactly_and_refuses_pickles_and_other_architectures(class3, digits_kind, tmp_path):
    original, splits = class3
    mask = SaliencyMask.compute(copy.deepcopy(original), splits["forget"], negative_cross_entropy, 0.3, 256)
    path = tmp_path / "masks" / "class3.safetensors"
    mask.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["class3.safetensors"]  # no temporary left behind
    loaded = SaliencyMask.load(path)
    assert loaded.ratio == mask.ratio and loaded.metadata == mask.metadata and list(loaded.masks) == list(mask.masks)
    for name in mask.masks:
        assert loaded.masks[name].dtype == torch.bool and torch.equal(loaded.masks[name], mask.masks[name])
    loaded.check_fits(original)

    pickled = tmp_path / "mask.pt"
    torch.save({k: v.long() for k, v in mask.masks.items()}, pickled)
    with pytest.raises(UserError, match="pickle"):
        SaliencyMask.load(pickled)
    garbage = tmp_path / "junk.safetensors"
    garbage.write_bytes(b"not a mask at all")
    with pytest.raises(UserError):
        SaliencyMask.load(garbage)

    other = digits_kind.new_model(0)
    other.head = torch.nn.Linear(other.head.in_features, 5)
    with pytest.raises(
        UserError, match=r"does not fit the model \(shape of head.bias: \(10,\) vs model \(5,\)"
    ):
        loaded.check_fits(other)
    cls = METHODS.get("salun")
    with pytest.raises(UserError, match="does not fit"):
        cls(make_hparams(cls, "salun", {"mask_path": str(path)})).check(other)


@pytest.mark.parametrize("name", ["salun", "salun-soft"])
@pytest.mark.parametrize("ratio", [0, -0.1, 1.5])
def test_a_ratio_outside_zero_one_is_a_user_error_naming_the_options(name, ratio):
    with pytest.raises(UserError, match=r"ratio.*valid: .*ratio=0\.5"):
        make_hparams(METHODS.get(name), name, {"ratio": ratio})


# ---------------------------------------------------------------- salun


def test_salun_keeps_masked_out_weights_at_theta0_and_forgets_class3(class3, digits_kind, monkeypatch, tmp_path):
    original, splits = class3
    model, optimizer = run(digits_kind, "salun", original, splits, monkeypatch)
    mask = independent_top_mask(original, splits["forget"], 0.5, 256)
    theta0, after = dict(original.named_parameters()), dict(model.named_parameters())
    moved = 0
    for name, keep in mask.items():
        assert torch.equal(after[name][~keep], theta0[name][~keep]), name  # bit-identical, weight decay included
        buffer = optimizer.state[after[name]]["momentum_buffer"]
        assert not bool(buffer[~keep].any()), name
        moved += int((after[name][keep] != theta0[name][keep]).sum())
    assert moved > 0.9 * sum(int(k.sum()) for k in mask.values())

    assert accuracy(original, splits["forget"]) > 0.95
    assert accuracy(model, splits["forget"]) < accuracy(original, splits["forget"]) - 0.25
    assert accuracy(model, splits["retain"]) > 0.95

    saved = tmp_path / "mask.safetensors"
    SaliencyMask.compute(copy.deepcopy(original), splits["forget"], negative_cross_entropy, 0.5, 256).save(saved)
    from_file, _ = run(digits_kind, "salun", original, splits, mask_path=str(saved), ratio=0.9)
    for a, b in zip(from_file.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # a saved mask replaces the computed one (and its ratio wins)


# ---------------------------------------------------------------- salun-soft


def test_soft_threshold_shrinks_changes_by_the_kth_smallest_and_resets_the_rest():
    theta0 = torch.zeros(6)
    p = torch.nn.Parameter(torch.tensor([0.5, -0.1, 0.3, -0.7, 0.2, 0.05]))
    soft_module.soft_threshold_([p], theta0, k=3)  # |Δ| sorted: 0.05 0.1 0.2 | 0.3 ...: τ = 0.2
    assert torch.allclose(p.detach(), torch.tensor([0.3, 0.0, 0.1, -0.5, 0.0, 0.0]))
    before = p.detach().clone()
    soft_module.soft_threshold_([p], theta0, k=0)
    assert torch.equal(p.detach(), before)


def test_salun_soft_resets_the_scheduled_number_of_smallest_changes_after_every_step(class3, digits_kind, monkeypatch):
    original, splits = class3
    theta0 = torch.cat([p.detach().flatten() for p in original.parameters()])
    seen = []
    real = soft_module.soft_threshold_

    def spy(params, theta, k):
        real(params, theta, k)
        flat = torch.cat([p.detach().flatten() for p in params])
        seen.append((k, int((flat == theta0).sum())))

    monkeypatch.setattr(soft_module, "soft_threshold_", spy)
    model, _ = run(digits_kind, "salun-soft", original, splits)
    n = theta0.numel()
    total = 10 * (math.ceil(len(splits["forget"]) / 256) + math.ceil(len(splits["retain"]) / 256))
    assert [k for k, _ in seen] == [int(0.5 * ((total - t) / total * n)) for t in range(1, total + 1)]
    assert seen[0][0] > 0.49 * n and seen[-1][0] == 0
    for k, at_theta0 in seen[:-1]:
        assert k <= at_theta0 <= k + 0.001 * n  # exactly the k smallest, up to ties at the threshold
    assert accuracy(model, splits["forget"]) < accuracy(original, splits["forget"]) - 0.25


# ---------------------------------------------------------------- l1-sparse


def test_l1_weight_decays_linearly_per_epoch_and_stops_for_the_last_epochs():
    assert [l1_module.l1_weight(1.0, e, 4) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert [l1_module.l1_weight(1.0, e, 4, no_l1_epochs=2) for e in range(4)] == [1.0, 0.5, 0.0, 0.0]


def test_l1_sparse_decays_its_penalty_per_epoch_and_ends_sparser_than_finetune(class3, digits_kind, monkeypatch):
    original, splits = class3
    seen = []
    real = l1_module.l1_weight

    def spy(alpha, epoch, epochs, no_l1_epochs=0):
        seen.append((epoch, real(alpha, epoch, epochs, no_l1_epochs)))
        return seen[-1][1]

    monkeypatch.setattr(l1_module, "l1_weight", spy)
    settings = {"lr": 0.03, "epochs": 10, "batch_size": 64}
    sparse, _ = run(digits_kind, "l1-sparse", original, splits, alpha=5e-3, **settings)
    batches = math.ceil(len(splits["retain"]) / 64)
    assert seen == [(e, 5e-3 * (1 - e / 10)) for e in range(10) for _ in range(batches)]

    plain, _ = run(digits_kind, "finetune", original, splits, **settings)
    with torch.no_grad():
        norms = [float(l1_module.l1_norm(m)) for m in (sparse, plain, original)]
        assert norms[2] == pytest.approx(float(sum(p.abs().sum() for p in original.parameters())), rel=1e-6)
    assert norms[0] < 0.5 * norms[1]
    # On class-wise digits the penalty is what makes fine-tuning forget at these settings.
    assert accuracy(sparse, splits["forget"]) < accuracy(original, splits["forget"]) - 0.25
    assert accuracy(sparse, splits["retain"]) > 0.95


def test_mask_command_saves_shows_and_feeds_salun(tmp_path, shared_cache, capsys):
    from unlearn.cli import main

    out = tmp_path / "m.safetensors"
    common = ["--workdir", str(tmp_path), "--cache-dir", str(shared_cache), "--no-progress"]
    assert main(["mask", "--forget", "class:3", "--ratio", "0.3", "--out", str(out), *common]) == 0
    shown = capsys.readouterr().out
    assert main(["mask", "--show", str(out)]) == 0
    assert capsys.readouterr().out == shown
    mask = SaliencyMask.load(out)
    assert mask.kept() == int(0.3 * mask.total()) and mask.metadata["forget"] == "class:3"
    assert f"{mask.kept()} of {mask.total()} weights kept" in shown and "head.weight" in shown
    code = main(["run", "--methods", "salun", "--forget", "class:3", "--seeds", "0",
                 "--hparam", f"salun.mask_path={out}", *common])
    assert code == 0
    record = next((tmp_path / "data/runs").rglob("*.json")).read_text()
    assert '"status": "ok"' in record and str(out) in record
    (tmp_path / "junk.safetensors").write_bytes(b"\x80\x04junk")
    assert main(["mask", "--show", str(tmp_path / "junk.safetensors")]) == 2
    assert main(["mask", "--forget", "class:3", "--ratio", "1.5", "--out", str(out), *common]) == 2
    assert main(["mask", "--forget", "class:3", *common]) == 2
