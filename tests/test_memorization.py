"""Planted memorisation on the DDPM: the planted data, the `memorized` forget set, the oracle, the extraction rate,
the pruned share and the bad input (docs/generation.md, "Memorisation")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli
from torch import nn

from unlearn.data import load_dataset
from unlearn.data.planted import Planting, plant
from unlearn.errors import UserError
from unlearn.forget import ForgetSpec
from unlearn.harness import Models, Workspace, load_kind
from unlearn.metrics import Evaluation, evaluate
from unlearn.metrics.generation import GenerationCell, Judge
from unlearn.metrics.memorization import Planted
from unlearn.results import read_record
from unlearn.spec import MemorizationSettings, read_spec

MEMO_SPEC = Path(__file__).parents[1] / "benchmarks" / "digits-ddpm-memo.yaml"


def tiny_memo_spec(tmp_path: Path, dataset: str = "digits:memorize=3:copies=4:seed=1", **changes) -> Path:
    """digits-ddpm-memo shrunk to seconds: 3 planted images of 4 copies, 1 epoch, 3 samples per condition, 2 DDIM
    steps, the 5-epoch judge of test_generation."""
    spec = yaml.safe_load(MEMO_SPEC.read_text())
    spec.update(name="tiny-memo", dataset=dataset, **changes)
    spec["train"]["epochs"] = 1
    settings = spec["evaluation"]["generation"]
    settings.update(samples_per_class=3, sampler_steps=2, grid_columns=2)
    settings["judge"]["train"]["epochs"] = 5  # test_generation's tiny judge: one cache entry for both
    path = tmp_path / "tiny-memo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def copies_of(image, images) -> int:
    """How many of `images` equal `image` exactly."""
    return int((images.flatten(1) == image.flatten()).all(1).sum())


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_planting_adds_exactly_the_copies_under_their_own_condition_ids(digits):
    planted = plant(digits, Planting("digits", images=3, copies=4, seed=1))
    real = digits.train
    assert planted.planted_ids == (10, 11, 12) and planted.num_classes == 13 and planted.real is digits
    assert len(planted.train) == len(real) - 3 + 3 * 4
    rows = planted.planted_rows()
    assert planted.train.y[rows].tolist() == [10] * 4 + [11] * 4 + [12] * 4
    for i, source in enumerate(planted.sources):
        copies = planted.train.x[planted.train.y == 10 + i]
        assert torch.equal(copies, real.x[source].expand_as(copies))
        # the planted image left its real class: one fewer exact copy of it among the real rows
        assert copies_of(real.x[source], planted.train.x[~rows]) == copies_of(real.x[source], real.x) - 1
    assert torch.equal(planted.train.y[~rows].bincount(), real.y.bincount() - torch.bincount(
        real.y[list(planted.sources)], minlength=10))
    other = plant(digits, Planting("digits", images=3, copies=4, seed=2))
    assert other.sources != planted.sources and other.name != planted.name and other.fingerprint != planted.fingerprint
    assert plant(digits, Planting("digits", 3, 4, 1)).sources == planted.sources  # the seed decides


@pytest.mark.parametrize("text, message", [
    ("digits:memorize=0", "memorize must be >= 1"),
    ("digits:copies=5", "memorize=P"),
    ("digits:memorise=3", "did you mean"),
    ("digits:memorize=x", "whole number"),
    ("digits:memorize=2:copies=100000", "copies between"),
])
def test_bad_planting_options_are_one_line_errors(text, message):
    with pytest.raises(UserError, match=message):
        Planting.parse(text)
    assert Planting.parse("digits") is None


def test_memorized_forget_set_is_the_planted_rows_and_the_oracle_never_sees_them(tmp_path, shared_cache):
    spec = read_spec(tiny_memo_spec(tmp_path))
    workspace = Workspace.at(tmp_path, cache_dir=shared_cache)
    kind = load_kind(spec, workspace, torch.device("cpu"))
    models = Models(kind, workspace)
    key = kind.original_key(0)  # the planted data (and the option naming it) enter the original model's cache key
    assert key["data"] == kind.dataset.fingerprint != kind.real.fingerprint and "memorize=3" in key["dataset"]
    manifest = models.build_manifest(ForgetSpec.parse("memorized"), 0)
    rows = kind.dataset.planted_rows()
    assert manifest.indices == torch.nonzero(rows).flatten().tolist() and manifest.size == 12
    assert manifest.forgotten_classes == [10, 11, 12] and manifest.seed is None
    assert models.build_manifest(ForgetSpec.parse("memorized"), 2).indices == manifest.indices

    seen = []
    start = kind.new_model(0)
    assert start.labels.num_embeddings == 14  # 10 real classes, 3 planted conditions and the null label
    oracle = models.oracle_choice.instance()
    request = models.request(oracle, start, kind.splits(manifest), 0)
    assert request.forget_classes == (10, 11, 12) and request.num_classes == 13
    object.__setattr__(request, "train_recipe", lambda m, d: (seen.append(d), m)[1])
    oracle.unlearn(request)
    (data,) = seen
    assert int(data.y.max()) < 10 and len(data) == len(kind.dataset.real.train) - 3
    real = kind.dataset.real.train
    for source in kind.dataset.sources:  # the planted images left their real class: the oracle never saw them
        assert copies_of(real.x[source], data.x) == copies_of(real.x[source], real.x) - 1


class Replayer(nn.Module):
    """A fake generator: planted conditions give their planted image (`noise`: uniform noise), real ones a real image."""

    def __init__(self, dataset, noise: bool = False):
        super().__init__()
        self.dataset, self.noise, self.is_one_step = dataset, noise, False
        self.weight = nn.Parameter(torch.ones(4))

    def sample(self, condition, steps, guidance, gen, eta=0.0):
        out = []
        for c in condition.tolist():
            if c >= 10:
                image = torch.rand(self.dataset.train.x.shape[1:], generator=gen) if self.noise else \
                    self.dataset.real.train.x[self.dataset.sources[c - 10]]
            else:
                image = self.dataset.train.x[self.dataset.train.y == c][0]
            out.append(image)
        return torch.stack(out)


def scores(model, dataset, forgotten, original=None):
    spec = read_spec(MEMO_SPEC)
    settings = spec.evaluation.generation.model_copy(update={"samples_per_class": 5})
    judge = Judge(nn.Sequential(), "untrained")
    judge.model.features = lambda x: x.flatten(1)  # type: ignore[attr-defined]
    judge.model.head = lambda f: f[:, :10]  # type: ignore[attr-defined]
    real = dataset.train.where(dataset.train.y < 10)
    cell = GenerationCell(judge, forgotten, 10, real, dataset.num_classes)
    planted = Planted(dataset.train, dataset.planted_ids)
    resources = {"judge": lambda: cell, "planted": lambda: planted}
    ev = Evaluation(model, {}, 512, resources, 0, {"generation": settings, "memorization": MemorizationSettings()})
    resources["original"] = lambda: Evaluation(original if original is not None else model, {})
    return evaluate(ev, ["generation", "memorization", "pruned"]).values


def test_extraction_is_100_for_a_replaying_model_and_0_for_noise(digits):
    dataset = plant(digits, Planting("digits", images=3, copies=4, seed=1))
    replay = scores(Replayer(dataset), dataset, (10, 11, 12))
    assert replay["Extraction"] == 100.0 and replay["Planted-dist"] == 0.0
    noise = scores(Replayer(dataset, noise=True), dataset, (10, 11, 12))
    assert noise["Extraction"] == 0.0 and noise["Planted-dist"] > MemorizationSettings().threshold
    # the judge scores the real classes only: no UA for planted conditions, Acc-r and FD on the ten real classes
    assert "UA" not in replay and {"Acc-r", "FD"} <= set(replay)
    assert {k for k in replay if k.startswith("Acc@")} == {f"Acc@{c}" for c in range(10)}
    assert "UA" in scores(Replayer(dataset), dataset, (3, 10))


def test_pruned_counts_weights_zeroed_against_the_original(digits):
    dataset = plant(digits, Planting("digits", images=3, copies=4, seed=1))
    original = Replayer(dataset)
    original.weight.data[0] = 0.0  # already zero before: not pruned by the method
    model = Replayer(dataset)
    model.weight.data[:2] = 0.0
    assert scores(model, dataset, (10, 11, 12), original)["Pruned"] == 25.0
    assert scores(original, dataset, (10, 11, 12), original)["Pruned"] == 0.0


def test_a_tiny_memorisation_grid_runs_from_the_cli(tmp_path, shared_cache, capsys):
    args = ["run", "--benchmark", str(tiny_memo_spec(tmp_path)), "--methods", "retrain,esd", "--hparam",
            "esd.iterations=2", "--seeds", "0", "--workdir", str(tmp_path), "--cache-dir", str(shared_cache),
            "--no-progress", "--device", "cpu"]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    records = {r.method: r for p in (tmp_path / "data" / "runs").rglob("*.json") for r in [read_record(p)]}
    assert set(records) == {"retrain", "esd"} and records["esd"].forget.spec == "memorized"
    for record in records.values():
        assert record.status == "ok" and {"Extraction", "Planted-dist", "Acc-r", "FD", "Pruned"} <= set(record.metrics)
        assert "UA" not in record.metrics
    assert records["retrain"].metric_info["memorization"]["samples"] == 3 * 3


@pytest.mark.parametrize("dataset, forget, message", [
    ("digits", "memorized", "planted none"),
    ("digits:memorize=3:copies=4:seed=1", "memorized:all", "takes no argument"),
    ("digits:memorize=0", "memorized", "memorize must be >= 1"),
    ("digits", "class:3", "planted"),  # the extraction metric on a benchmark that planted nothing
])
def test_bad_memorisation_input_exits_2(tmp_path, shared_cache, capsys, dataset, forget, message):
    path = tiny_memo_spec(tmp_path, dataset=dataset)
    code, _, err = run_cli(capsys, "run", "--benchmark", str(path), "--forget", forget, "--workdir", str(tmp_path),
                           "--cache-dir", str(shared_cache), "--no-progress", "--device", "cpu")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "data" / "runs").rglob("*.json"))


def test_memorized_on_a_classification_benchmark_exits_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--benchmark", "digits", "--forget", "memorized", "--methods", "retrain",
                           "--workdir", str(tmp_path), "--no-progress", "--device", "cpu")
    assert code == 2 and "planted none" in err and len(err.strip().splitlines()) == 1


def test_forget_set_build_names_the_memorized_set_by_its_kind(tmp_path, shared_cache, capsys):
    common = ["--benchmark", str(tiny_memo_spec(tmp_path)), "--workdir", str(tmp_path), "--cache-dir", str(shared_cache),
              "--no-progress", "--device", "cpu"]
    code, out, err = run_cli(capsys, "forget-set", "build", "memorized", *common)
    assert code == 0, err
    assert out.splitlines()[0].endswith("digits+memorized-3x4-seed1/memorized.json")
    code, _, err = run_cli(capsys, "forget-set", "build", "memorized", "--fraction", "0.1", *common)
    assert code == 2 and "takes no size" in err
