"""subspace-prune and its masks (unlearn/subspace.py): the Wanda rule on a hand-built case, the union over
steps, IoU, pruning that touches only the masked weights, and runs from the command line."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_diffusion_request, run_cli
from test_generation import tiny_spec

from unlearn.methods import METHODS, Track, make_hparams
from unlearn.methods.subspace_prune import SubspacePrune
from unlearn.results import read_record
from unlearn.subspace import MaskSettings, iou, prunable_layers, timestep_masks, union, wanda_mask

FORGET = 3
SETTINGS = MaskSettings(skill_ratio=0.05, timesteps=3, sampler_steps=10, guidance=2.0, samples_per_condition=1)
"""Short: three scored steps of a ten-step sampler."""


def request_for(model, digits_kind, seed=0):
    return make_diffusion_request(copy.deepcopy(model), digits_kind.dataset.train, [FORGET], Track.FULL, seed)


def method(**hparams) -> SubspacePrune:
    values = {"skill_ratio": SETTINGS.skill_ratio, "timesteps": SETTINGS.timesteps,
              "sampler_steps": SETTINGS.sampler_steps} | hparams
    return SubspacePrune(make_hparams(SubspacePrune, "subspace-prune", values))


def test_wanda_mask_keeps_the_top_memorised_columns_per_row_where_memorised_beats_normal():
    weight = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 4.0, -1.0]])
    memorised = torch.tensor([4.0, 3.0, 2.0, 1.0])
    normal = torch.tensor([5.0, 1.0, 1.0, 0.5])
    # row 0: memorised scores 4, 3, 2, 1 -> top two columns 0, 1; only column 1 beats the normal score
    # row 1: memorised scores 4, 3, 8, 1 -> top two columns 2, 0; only column 2 beats it. Column 3 beats it in
    # both rows but is not among the top two, so it stays.
    expected = torch.tensor([[False, True, False, False], [False, False, True, False]])
    assert torch.equal(wanda_mask(weight, memorised, normal, 0.5), expected)
    assert torch.equal(wanda_mask(weight, memorised, normal, 0.3), expected)  # ⌈0.3 · 4⌉ = 2
    assert torch.equal(wanda_mask(weight, memorised, normal, 1.0), (weight.abs() * memorised > weight.abs() * normal))
    assert not wanda_mask(weight, normal, normal, 1.0).any()  # equal norms: nothing is memorised


def test_a_mask_row_keeps_at_most_its_share_of_columns_and_only_where_memorised_wins():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(40, 96, generator=gen)
    memorised, normal = torch.rand(96, generator=gen), torch.rand(96, generator=gen)
    mask = wanda_mask(weight, memorised, normal, 0.05)
    assert int(mask.sum(1).max()) <= 5 and mask.sum() > 0  # ⌈0.05 · 96⌉ = 5
    assert bool((weight.abs() * memorised > weight.abs() * normal)[mask].all())


def test_union_is_the_elementwise_or_and_iou_compares_masks():
    a = {"l": torch.tensor([True, False, False, True])}
    b = {"l": torch.tensor([False, False, True, True])}
    assert torch.equal(union([a, b])["l"], torch.tensor([True, False, True, True]))
    assert not a["l"][2]  # union copies
    assert iou(a, a) == 1.0 and iou(a, b) == pytest.approx(1 / 3)
    assert iou(a, {"l": ~a["l"]}) == 0.0


def test_the_method_prunes_exactly_the_union_of_its_step_masks_and_nothing_else(tiny_ddpm, digits_kind):
    request = request_for(tiny_ddpm, digits_kind)
    steps = timestep_masks(tiny_ddpm, torch.tensor([FORGET]), torch.tensor([c for c in range(10) if c != FORGET]),
                           SETTINGS, request.generator("noise"))
    masks = union(steps)
    counts = [sum(int(m.sum()) for m in s.values()) for s in steps]
    total = sum(int(m.sum()) for m in masks.values())
    assert min(counts) > 0 and total > max(counts)  # the steps differ, so the union is larger than any one

    model = method().unlearn(request)
    scored = {f"{name}.weight" for name in prunable_layers(model)}
    before, after = dict(tiny_ddpm.named_parameters()), dict(model.named_parameters())
    for name, p in after.items():
        mask = masks.get(name.removesuffix(".weight")) if name in scored else None
        if mask is None:
            assert torch.equal(p, before[name]), name
        else:
            assert torch.equal(p[~mask], before[name][~mask]) and bool((p[mask] == 0).all()), name
    assert request.info["pruned_weights"] == total
    assert request.info["pruned_fraction"] == pytest.approx(total / sum(p.numel() for p in model.parameters()))
    assert request.info["pruned_per_layer"]["unet.time_embedding.linear_1"] == 0.0  # it never sees the condition


def test_masks_depend_on_the_seed_and_the_track_is_full(tiny_ddpm, digits_kind):
    first = method().masks(request_for(tiny_ddpm, digits_kind, seed=0))
    again = method().masks(request_for(tiny_ddpm, digits_kind, seed=0))
    other = method().masks(request_for(tiny_ddpm, digits_kind, seed=1))
    assert iou(first, again) == 1.0 and iou(first, other) < 1.0
    assert SubspacePrune().track is Track.FULL and SubspacePrune.kinds == ("generation",)
    defaults = METHODS.get("subspace-prune").HParams()
    assert (defaults.skill_ratio, defaults.timesteps, defaults.sampler_steps) == (0.01, 10, 50)


def test_runs_from_the_command_line_and_refuses_bad_hyperparameters(tmp_path, shared_cache, capsys):
    spec = str(tiny_spec(tmp_path))
    common = ["run", "--benchmark", spec, "--methods", "subspace-prune", "--forget", "class:3", "--seeds", "0",
              "--workdir", str(tmp_path), "--cache-dir", str(shared_cache), "--no-progress", "--device", "cpu"]
    for bad, message in [("timesteps=60", "timesteps=60 but the sampler has sampler_steps=50"),
                         ("skill_ratio=0", "subspace-prune.skill_ratio")]:
        code, _, err = run_cli(capsys, *common, "--hparam", f"subspace-prune.{bad}")
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not list((tmp_path / "data" / "runs").rglob("*.json"))

    code, _, err = run_cli(capsys, *common, "--hparam", "subspace-prune.sampler_steps=4",
                           "--hparam", "subspace-prune.timesteps=2")
    assert code == 0, err
    record = read_record(next((tmp_path / "data" / "runs").rglob("*.json")))
    assert record.status == "ok" and record.method == "subspace-prune"
    assert 0 < record.method_info["pruned_fraction"] < 0.01 and record.method_info["normal_conditions"] == 9


def test_a_layer_the_forward_pass_never_calls_gets_an_empty_mask(tiny_ddpm):
    model = copy.deepcopy(tiny_ddpm)
    model.unused = torch.nn.Linear(3, 2)
    masks = union(timestep_masks(model, torch.tensor([FORGET]), torch.tensor([0, 1]), SETTINGS,
                                 torch.Generator().manual_seed(0)))
    assert masks["unused"].shape == (2, 3) and not masks["unused"].any()
    assert any(m.any() for m in masks.values())
