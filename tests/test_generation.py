"""The generation track: a class-conditional DDPM grid end to end, its metrics, its records and its bad input."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import plugin_methods
import pytest
import torch
import yaml
from conftest import files_under, run_cli
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.forget import ForgetSpec
from unlearn.harness import Models, Workspace, load_kind
from unlearn.leaderboard.build import render
from unlearn.metrics import Evaluation, evaluate
from unlearn.metrics.diversity import coverage, coverage_of_data, mean_pairwise_distance
from unlearn.metrics.generation import GenerationCell, Judge, frechet_distance, shell_conditions
from unlearn.models import Blueprint
from unlearn.results import read_record
from unlearn.spec import BenchmarkSpec, read_spec
from unlearn.submit import submit
from unlearn.train import train_with_recipe


def tiny_spec(tmp_path: Path, **generation) -> Path:
    """digits-ddpm shrunk to seconds: 3 epochs, 6 samples per class, 4 DDIM steps, a 5-epoch judge."""
    spec = yaml.safe_load((Path(__file__).parents[1] / "benchmarks" / "digits-ddpm.yaml").read_text())
    spec["name"] = "tiny-ddpm"
    spec["train"]["epochs"] = 3
    spec["train"]["lr"] = 1e-3
    settings = spec["evaluation"]["generation"]
    settings.update(samples_per_class=6, sampler_steps=4, near_samples=2, grid_columns=4)
    settings["judge"]["train"]["epochs"] = 5
    settings.update(generation)
    spec["grid"]["methods"] = ["retrain"]
    spec["grid"]["seeds"] = [0, 1]
    path = tmp_path / "tiny-ddpm.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_grid_runs_end_to_end_with_records_sample_grids_and_leaderboard_links(tmp_path, shared_cache, capsys):
    spec_path = tiny_spec(tmp_path)
    args = ["run", "--benchmark", str(spec_path), "--methods", "retrain,plugin_methods:DataFreeProbe,diffusion-grad-ascent",
            "--hparam", "diffusion-grad-ascent.lr=1e6", "--hparam", "diffusion-grad-ascent.iterations=4",
            "--hparam", "diffusion-grad-ascent.batch_size=16", "--forget", "class:3", "--seeds", "0",
            "--workdir", str(tmp_path), "--cache-dir", str(shared_cache), "--no-progress", "--device", "cpu"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "3 cells run, 0 reused, 1 failed" in err
    runs = tmp_path / "data" / "runs" / "tiny-ddpm"
    records = {r.method: (p, r) for p in runs.rglob("*.json") for r in [read_record(p)]}

    path, retrain = records["retrain"]
    assert retrain.status == "ok"
    assert set(retrain.metrics) >= {"UA", "P-f", "Entropy-f", "Acc-r", "FD", "Samples/s", "UA-near"}
    assert {f"Acc@{c}" for c in range(10) if c != 3} <= set(retrain.metrics) and "Acc@3" not in retrain.metrics
    info = retrain.metric_info["generation"]
    assert (info["samples_per_class"], info["sampler_steps"], info["guidance"], info["sampler"]) == (6, 4, 2.0, "ddim")
    assert retrain.config["evaluation"]["generation"]["sampler_steps"] == 4  # pinned settings enter the config hash
    png = path.parent / retrain.artifacts["samples"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "judge" in retrain.metric_info["generation"]

    # the data-free track hands over labels only
    probe = plugin_methods.DATA_FREE_SEEN[-1]
    assert probe.forget is None and probe.retain is None and probe.forget_classes == (3,)
    assert records["plugin_methods:DataFreeProbe"][1].track == "data-free"

    # a diffusion run whose loss becomes NaN is a failed record, and the grid went on
    failed = records["diffusion-grad-ascent"][1]
    assert failed.status == "failed" and failed.error.startswith("diverged:") and "NaN" in failed.error
    assert not failed.artifacts

    # a rerun reuses every finished cell and prints the same table
    code, out2, err2 = run_cli(capsys, *args)
    assert code == 0 and "0 cells run, 3 reused" in err2 and out2 == out

    # submitted with their grids, the leaderboard links them
    board = tmp_path / "leaderboard"
    spec = read_spec(spec_path)
    grid = {"methods": ["retrain", "plugin_methods:DataFreeProbe"], "seeds": [0]}  # the cells this test ran
    spec = spec.model_copy(update={"grid": spec.grid.model_copy(update=grid)})
    submit(spec, tmp_path / "data" / "runs", board / "results", methods=["retrain", "plugin_methods:DataFreeProbe"],
           submitted_by="test")
    copied = [p for p in files_under(board / "results") if p.suffix == ".png"]
    assert len(copied) == 2
    page = render(board).outputs["README.md"].decode()
    link = next(line for line in page.splitlines() if line.startswith("Samples per class"))
    for png_path in copied:
        assert png_path.relative_to(board).as_posix() in link


def test_the_cifar10_preset_is_the_published_model(tmp_path):
    from unlearn.models.diffusion import GeneratorBlueprint
    from unlearn.spec import load_benchmark

    spec = load_benchmark("cifar10-ddpm")
    assert spec.kind == "generation" and spec.train.optimizer == "adam" and spec.evaluation.generation.sampler_steps == 50
    model = GeneratorBlueprint(spec.model, 3, (32, 32), 10).build(0)
    assert 35.6e6 < sum(p.numel() for p in model.parameters()) < 35.8e6  # Ho et al.'s CIFAR-10 DDPM: 35.7 M
    eps = model(torch.rand(2, 3, 32, 32), torch.tensor([10, 500]), torch.tensor([0, 10]))
    assert eps.shape == (2, 3, 32, 32) and bool(torch.isfinite(eps).all())


def test_oracle_is_trained_without_the_forgotten_class(tmp_path, shared_cache):
    spec = read_spec(tiny_spec(tmp_path))
    kind = load_kind(spec, Workspace.at(tmp_path, cache_dir=shared_cache), torch.device("cpu"))
    models = Models(kind, Workspace.at(tmp_path, cache_dir=shared_cache))
    manifest = models.build_manifest(ForgetSpec.parse("class:3"), 0)
    seen: list[TensorData] = []
    original = models.load_or_train_original(0).model
    request = models.request(models.oracle_choice.instance(), original, kind.splits(manifest), 0)
    inner = request.train_recipe
    object.__setattr__(request, "train_recipe", lambda m, d: (seen.append(d), inner(m, d))[1])
    model = models.oracle_choice.instance().unlearn(request)
    assert len(seen) == 1 and 3 not in seen[0].y.tolist() and len(seen[0]) == int((kind.train.y != 3).sum())
    assert model is not original and type(model).__name__ == "ClassConditionalDDPM"


class PerfectGenerator(nn.Module):
    """A 'generator' that returns real images of the class asked for (or of `swap[c]` instead)."""

    def __init__(self, data: TensorData, swap: dict[int, int] | None = None):
        super().__init__()
        self.data = data
        self.swap = swap or {}
        self.labels = nn.Embedding(11, 4)
        self.is_one_step = False

    def sample(self, condition, steps, guidance, gen, eta=0.0):
        if condition.is_floating_point():  # interpolated embeddings: take the nearest class row
            condition = torch.cdist(condition, self.labels.weight[:10]).argmin(1)
        out = []
        for c in condition.tolist():
            pool = self.data.x[self.data.y == self.swap.get(c, c)]
            out.append(pool[int(torch.randint(len(pool), (1,), generator=gen))])
        return torch.stack(out)


@pytest.fixture(scope="module")
def judge(digits_kind) -> Judge:
    ds = digits_kind.dataset
    model = Blueprint("small-cnn", 1, (8, 8), 10, tuple(ds.mean), tuple(ds.std)).build(0)
    recipe = digits_kind.spec.train
    return Judge(train_with_recipe(model, ds.train, recipe, 0).eval().requires_grad_(False), "test-judge")


def generation_scores(model, judge, digits_kind, forgotten=(3,), metrics=("generation", "generality"),
                      **settings_update):
    spec = read_spec(Path(__file__).parents[1] / "benchmarks" / "digits-ddpm.yaml")
    update = {"samples_per_class": 40, "near_samples": 10, **settings_update}
    settings = spec.evaluation.generation.model_copy(update=update)
    real = digits_kind.dataset.train.where(~torch.isin(digits_kind.dataset.train.y, torch.tensor(forgotten)))
    cell = GenerationCell(judge, forgotten, 10, real)
    ev = Evaluation(model, {}, 512, {"judge": lambda: cell}, 0,
                    {"generation": settings, "diversity": spec.evaluation.diversity})
    return evaluate(ev, list(metrics)).values


def test_metrics_score_real_images_as_recognised_and_a_swapped_class_as_forgotten(digits_kind, judge):
    test = digits_kind.dataset.test
    faithful = generation_scores(PerfectGenerator(test), judge, digits_kind)
    assert faithful["UA"] < 10 and faithful["Acc-r"] > 90 and faithful["P-f"] > 80
    swapped = generation_scores(PerfectGenerator(test, {3: 5}), judge, digits_kind)
    assert swapped["UA"] > 90 and swapped["P-f"] < 10
    assert swapped["Acc-r"] == pytest.approx(faithful["Acc-r"])
    # FD against the training images: the test images are close, a generator of one class only is far
    one_class = generation_scores(PerfectGenerator(test, {c: 0 for c in range(10)}), judge, digits_kind)
    assert faithful["FD"] < 0.2 * one_class["FD"]
    assert faithful["UA-near"] < 50 and swapped["UA-near"] > faithful["UA-near"]


class DistinctGenerator(PerfectGenerator):
    """Images of the class asked for, each at most once while they last; with `collapse`, the class's first image
    every time (mode collapse: one image per class)."""

    def __init__(self, data: TensorData, collapse: bool = False):
        super().__init__(data)
        self.collapse = collapse
        self.drawn: dict[int, int] = {}

    def sample(self, condition, steps, guidance, gen, eta=0.0):
        out = []
        for c in condition.tolist():
            pool = self.data.x[self.data.y == c]
            i = 0 if self.collapse else self.drawn.get(c, 0)
            self.drawn[c] = i + 1
            out.append(pool[i % len(pool)])
        return torch.stack(out)


def test_diversity_is_near_one_for_held_out_real_images_and_low_for_one_image_per_class(digits_kind, judge):
    """The judge calls a collapsed generator's samples right (Acc-r), so only the diversity metric sees it."""
    ds = digits_kind.dataset
    held_out = ds.val.concat(ds.test)  # about 54 unseen images per class, 40 drawn without replacement
    real = generation_scores(DistinctGenerator(held_out), judge, digits_kind, metrics=["generation", "diversity"])
    collapsed = generation_scores(DistinctGenerator(held_out, collapse=True), judge, digits_kind,
                                  metrics=["generation", "diversity"])
    assert collapsed["Acc-r"] > 80
    assert 0.85 < real["Div-r"] < 1.15 and collapsed["Div-r"] == 0.0
    assert {f"Div@{c}" for c in range(10) if c != 3} <= set(real) and "Div@3" not in real
    counts = [int((ds.train.y == c).sum()) for c in range(10) if c != 3]
    expected = 100 * float(np.mean([coverage_of_data(n, 40, 5) for n in counts]))  # about 76 % at these sizes
    assert abs(real["Coverage-r"] - expected) < 12 and collapsed["Coverage-r"] < 10


def test_diversity_of_hand_built_features_tracks_their_spread():
    gen = torch.Generator().manual_seed(0)
    real, same = torch.randn(300, 8, generator=gen), torch.randn(300, 8, generator=gen)
    assert mean_pairwise_distance(same) / mean_pairwise_distance(real) == pytest.approx(1.0, abs=0.05)
    assert coverage(real, same, 5) == pytest.approx(coverage_of_data(300, 300, 5), abs=0.04)  # about 0.97
    narrow = 0.3 * torch.randn(300, 8, generator=gen)
    assert mean_pairwise_distance(narrow) / mean_pairwise_distance(real) == pytest.approx(0.3, abs=0.05)
    assert coverage(real, narrow, 5) < coverage(real, same, 5) - 0.25  # the tails of the data go uncovered
    assert coverage(real, real[:1].expand(300, -1), 5) < 0.05  # one point covers only its neighbours' balls
    assert coverage_of_data(10, 1, 3) == pytest.approx(1 - 84 / 120)  # 1 − C(9, 3) / C(10, 3)


def test_the_diversity_metric_is_opt_in_and_leaves_existing_cell_configs_alone():
    from unlearn.harness.scoring import Scoring

    spec = read_spec(Path(__file__).parents[1] / "benchmarks" / "digits-ddpm.yaml")
    settings = Scoring.evaluation_settings.func(type("S", (), {"spec": spec})())
    assert set(settings) == {"generation"} and spec.evaluation.diversity.k == 5
    spec = spec.model_copy(update={"metrics": [*spec.metrics, "diversity"]})
    assert Scoring.evaluation_settings.func(type("S", (), {"spec": spec})())["diversity"] == {"k": 5}


def test_shell_conditions_lie_at_the_cosine_and_norm_asked_for_and_follow_the_seed():
    centre = torch.tensor([3.0, 4.0, 0.0, 0.0, 0.0])
    rows, cos = shell_conditions(centre, [0.9, 0.5], 7, torch.Generator().manual_seed(1))
    assert rows.shape == (14, 5) and cos.tolist() == [0.9] * 7 + [0.5] * 7
    assert torch.allclose(rows.norm(dim=1), torch.full((14,), 5.0))
    assert torch.allclose(torch.nn.functional.cosine_similarity(rows, centre[None]).double(), cos)
    again, _ = shell_conditions(centre, [0.9, 0.5], 7, torch.Generator().manual_seed(1))
    other, _ = shell_conditions(centre, [0.9, 0.5], 7, torch.Generator().manual_seed(2))
    assert torch.equal(rows, again) and not torch.allclose(rows, other)


def test_ua_shell_catches_a_forgotten_class_still_generated_near_its_embedding(digits_kind, judge):
    """RealEra's concept residue: a generator whose shell conditions (nearest embedding: the forgotten class's)
    still make class 3 scores a low UA-shell; one that makes 5 from them scores a high one."""
    test = digits_kind.dataset.test
    scores = {}
    for name, swap in (("keeps", {}), ("erased", {3: 5})):
        model = PerfectGenerator(test, swap)
        model.labels = nn.Embedding(11, 11).requires_grad_(False)
        model.labels.weight.copy_(torch.eye(11))  # at cosine 0.9 from e(3) the nearest row is still e(3)
        scores[name] = generation_scores(model, judge, digits_kind, shell=[0.9], shell_samples=30)
    assert scores["keeps"]["UA-shell"] < 15 and scores["erased"]["UA-shell"] > 85
    assert scores["keeps"]["UA-shell@0.9"] == scores["keeps"]["UA-shell"]


def test_frechet_distance_matches_the_reference_formula():
    from scipy import linalg

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=gen) @ torch.randn(6, 6, generator=gen)
    b = torch.randn(300, 6, generator=gen) * 2 + 0.5
    x, y = a.double().numpy(), b.double().numpy()
    s1, s2 = torch.tensor(x).T.cov().numpy(), torch.tensor(y).T.cov().numpy()
    ref = ((x.mean(0) - y.mean(0)) ** 2).sum() + s1.trace() + s2.trace() - 2 * linalg.sqrtm(s1 @ s2).real.trace()
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert abs(frechet_distance(a, a)) < 1e-8
    assert frechet_distance(a[:3], b[:3]) == frechet_distance(a[:3], b[:3])  # singular covariances: still finite


def test_one_step_generator_samples_in_one_network_evaluation(tiny_ddpm):
    model = copy.deepcopy(tiny_ddpm).eval()
    calls = []
    model.unet.register_forward_hook(lambda *_: calls.append(1))
    model.sample(torch.arange(10), 7, 2.0, torch.Generator().manual_seed(0))
    assert len(calls) == 7  # guidance runs conditional and null in one batched call per step
    calls.clear()
    model.one_step_t.fill_(440)
    images = model.sample(torch.arange(10), 7, 2.0, torch.Generator().manual_seed(0))
    assert len(calls) == 1 and images.shape == (10, 1, 8, 8) and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("override, message", [
    ({"guidance": 25.0}, "guidance"),
    ({"sampler_steps": 0}, "sampler_steps"),
    ({"sampler_steps": 1001}, "sampler_steps"),
    ({"near": [1.5]}, "near"),
    ({"shell": [1.0]}, "shell"),
])
def test_sampler_settings_out_of_range_exit_2(tmp_path, capsys, override, message):
    code, _, err = run_cli(capsys, "run", "--benchmark", str(tiny_spec(tmp_path, **override)), "--workdir",
                           str(tmp_path), "--no-progress")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("forget, message", [
    ("class:12", "12"),
    ("random:0.1", "class:K"),
])
def test_forget_sets_a_generator_cannot_take_exit_2(tmp_path, shared_cache, capsys, forget, message):
    code, _, err = run_cli(capsys, "run", "--benchmark", str(tiny_spec(tmp_path)), "--forget", forget, "--workdir",
                           str(tmp_path), "--cache-dir", str(shared_cache), "--no-progress", "--device", "cpu")
    assert code == 2 and message in err and err.strip().splitlines()[-1].startswith("unlearn: error:")
    assert not list((tmp_path / "data" / "runs").rglob("*.json"))


def test_methods_of_the_other_kind_are_refused_before_anything_runs(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--benchmark", str(tiny_spec(tmp_path)), "--methods", "salun",
                           "--workdir", str(tmp_path), "--no-progress")
    assert code == 2 and "classification" in err and "diffusion-salun" in err
    code, _, err = run_cli(capsys, "run", "--benchmark", "digits", "--methods", "diffusion-salun",
                           "--workdir", str(tmp_path), "--no-progress")
    assert code == 2 and "generation" in err


def _judge_file(path: Path, classes: int, metadata: dict | None = None) -> None:
    from unlearn.checkpoints import save_weights

    save_weights(Blueprint("small-cnn", 1, (8, 8), classes, (0.0,), (1.0,)).build(0), path, metadata)


@pytest.mark.parametrize("classes, metadata, message", [
    (5, None, "classifies 5 classes"),
    (10, {"classes": [f"c{i}" for i in range(10)]}, "trained on classes"),
])
def test_a_judge_trained_on_other_classes_exits_2(tmp_path, shared_cache, capsys, classes, metadata, message):
    _judge_file(tmp_path / "judge.safetensors", classes, metadata)
    spec_path = tiny_spec(tmp_path, judge={"model": "small-cnn", "checkpoint": "judge.safetensors"})
    code, _, err = run_cli(capsys, "run", "--benchmark", str(spec_path), "--seeds", "0", "--workdir", str(tmp_path),
                           "--cache-dir", str(shared_cache), "--no-progress", "--device", "cpu")
    assert code == 2 and message in err
    assert not list((tmp_path / "data" / "runs").rglob("*.json"))


def test_a_judge_checkpoint_of_the_right_classes_is_used(tmp_path, shared_cache, capsys):
    _judge_file(tmp_path / "judge.safetensors", 10, {"classes": [str(i) for i in range(10)]})
    spec_path = tiny_spec(tmp_path, judge={"model": "small-cnn", "checkpoint": "judge.safetensors"})
    code, _, err = run_cli(capsys, "run", "--benchmark", str(spec_path), "--seeds", "0", "--workdir", str(tmp_path),
                           "--cache-dir", str(shared_cache), "--no-progress", "--device", "cpu")
    assert code == 0, err
    record = read_record(next((tmp_path / "data" / "runs").rglob("*.json")))
    from unlearn.hashing import sha256_hex

    assert record.metric_info["generation"]["judge"] == sha256_hex((tmp_path / "judge.safetensors").read_bytes())


def test_generation_spec_needs_a_judge(tmp_path):
    text = tiny_spec(tmp_path).read_text().replace("    judge:", "    unused_judge:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(UserError, match="unused_judge|judge"):
        read_spec(bad)
    assert isinstance(read_spec(tiny_spec(tmp_path)), BenchmarkSpec)


def test_a_generator_checkpoint_is_scored_from_the_command_line(tmp_path, shared_cache, capsys):
    spec_path = str(tiny_spec(tmp_path))
    common = ["--benchmark", spec_path, "--forget", "class:3", "--seed", "0", "--workdir", str(tmp_path),
              "--cache-dir", str(shared_cache), "--no-progress", "--device", "cpu"]
    code, _, err = run_cli(capsys, "export", *common, "--out", str(tmp_path / "exp"))
    assert code == 0, err
    code, out, err = run_cli(capsys, "evaluate", *common, "--checkpoint", str(tmp_path / "exp" / "original.safetensors"))
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["checkpoint"][1:3] == rows["original"][1:3]  # the exported original scores as the original (UA, Acc-r)
    code, _, err = run_cli(capsys, "mask", *common, "--out", str(tmp_path / "m.safetensors"))
    assert code == 2 and "diffusion-salun" in err
