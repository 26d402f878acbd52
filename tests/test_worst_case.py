"""Worst-case forget sets: the bi-level pieces, the builder, its manifest and its use in a grid."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import files_under, make_grid

import unlearn.forget.worst_case as worst_case_module
from unlearn.cli import main
from unlearn.errors import UserError
from unlearn.forget import ForgetSpec, manifest_path, read_manifest
from unlearn.forget.bilevel import BilevelSettings, per_sample_loss, project_capped_simplex, select, top_groups
from unlearn.seeding import derive_seed
from unlearn.spec import Recipe

WORST = "worst-case:0.1"


@pytest.mark.parametrize("budget", [1.0, 3.0, 7.5])
def test_projection_lands_on_the_capped_simplex_and_is_the_nearest_point(budget):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 3, size=20)
    p = project_capped_simplex(w, budget)
    assert abs(p.sum() - budget) < 1e-6 and p.min() >= 0 and p.max() <= 1
    # optimality: no feasible random perturbation gets closer to w
    for _ in range(200):
        d = rng.normal(size=20)
        d -= d.mean()
        q = p + 1e-3 * d
        if q.min() >= 0 and q.max() <= 1:
            assert np.sum((q - w) ** 2) >= np.sum((p - w) ** 2) - 1e-12


def test_top_groups_breaks_ties_towards_the_lower_index():
    assert top_groups(np.array([0.5, 1.0, 0.5, 1.0, 0.2]), 3).tolist() == [0, 1, 3]


@pytest.fixture(scope="module")
def original(digits_spec, digits_kind, tmp_path_factory, shared_cache):
    from unlearn.harness import Workspace

    runner = make_grid(digits_spec, digits_kind, Workspace.at(tmp_path_factory.mktemp("wc"), cache_dir=shared_cache),
                         ["retrain"], ["random:0.1"], [0])
    return runner.models.load_or_train_original(0).model


def run_select(original, digits_kind, **settings):
    import copy

    s = BilevelSettings(**{"upper_iters": 3, **settings})
    return select(lambda: copy.deepcopy(original), digits_kind.train, np.arange(len(digits_kind.train)), 126, s, 0)


def test_the_nominal_upper_step_never_moves_the_set_and_the_default_does(original, digits_kind):
    init = np.sort(np.random.default_rng(derive_seed(0, "bilevel-init")).choice(len(digits_kind.train), 126,
                                                                               replace=False))
    nominal = run_select(original, digits_kind, upper_lr=1e-2)
    assert np.array_equal(nominal.chosen, init) and all(t["changed"] == 0 for t in nominal.trajectory[1:])
    default = run_select(original, digits_kind)
    assert default.trajectory[1]["changed"] > 5
    loss = per_sample_loss(original, digits_kind.train).numpy()
    easiest = run_select(original, digits_kind, objective="easiest")
    # the hardest set ends where the loss is lowest, the easiest where it is highest
    assert loss[default.chosen].mean() < loss[init].mean() < loss[easiest.chosen].mean()


def test_selection_leaves_the_original_model_untouched(original, digits_kind):
    before = {k: v.clone() for k, v in original.state_dict().items()}
    run_select(original, digits_kind, upper_iters=1)
    assert all(torch.equal(v, before[k]) for k, v in original.state_dict().items())


def test_worst_case_manifest_records_provenance_and_is_reused(tmp_path, digits_spec, digits_kind, shared_cache,
                                                              monkeypatch):
    from unlearn.harness import Classification, Workspace

    workspace = Workspace.at(tmp_path, cache_dir=shared_cache)
    text = f"{WORST}:upper_iters=4"
    runner = make_grid(digits_spec, digits_kind, workspace, ["retrain"], [text], [0])
    forget = ForgetSpec.parse(text)
    m = runner.models.build_manifest(forget, 0)
    path = manifest_path(workspace.forget_dir, "digits", forget, 0, "digits")
    assert path.is_file() and read_manifest(path) == m and m.benchmark == "digits" and m.size == 126
    prov = m.provenance
    assert prov["original_model"] == runner.models.cache.key_hash(digits_kind.original_key(0))
    iters = 4
    assert len(prov["trajectory"]) == iters and prov["settings"]["upper_lr"] == 1e4
    assert prov["epochs_trained"] == 2 * iters and prov["seconds"] > 0
    # the convergence report: the kept set is the best iterate's, and every step's overlap is recorded
    report, rows = prov["convergence"], prov["trajectory"]
    best = min(rows, key=lambda row: row["objective"])
    assert report["best_iteration"] == best["iteration"] and report["steps"] == iters - 1
    assert report["steps_changed"] == sum(row["changed"] > 0 for row in rows[1:])
    assert all(0 <= row["jaccard"] <= 1 for row in rows[1:]) and isinstance(report["converged"], bool)

    monkeypatch.setattr(worst_case_module, "select", lambda *a, **k: pytest.fail("rebuilt a stored set"))
    assert runner.models.build_manifest(forget, 0) == m
    # an original model trained under another recipe did not select this set
    other_spec = digits_spec.model_copy(update={"train": Recipe(epochs=2, batch_size=64, lr=0.05)})
    other_task = Classification(other_spec, digits_kind.dataset, digits_kind.device)
    other = make_grid(other_spec, other_task, workspace, ["retrain"], [WORST], [0])
    with pytest.raises(UserError, match="different original model"):
        other.models.build_manifest(forget, 0)
    assert read_manifest(path) == m


def test_class_variant_forgets_whole_classes(tmp_path, digits_spec, digits_kind, shared_cache):
    from unlearn.harness import Workspace

    runner = make_grid(digits_spec, digits_kind, Workspace.at(tmp_path, cache_dir=shared_cache), ["retrain"],
                         ["worst-case-class:1:upper_iters=2"], [0])
    m = runner.models.build_manifest(ForgetSpec.parse("worst-case-class:1:upper_iters=2"), 0)
    (label,) = m.forgotten_classes
    assert m.indices == np.flatnonzero(digits_kind.dataset.train.y.numpy() == label).tolist()
    rows, report = m.provenance["trajectory"], m.provenance["convergence"]
    assert rows[report["best_iteration"] - 1]["selection"] == [label]  # each iterate's class is listed


def test_the_same_seed_builds_the_same_manifest_and_an_older_builders_is_refused(tmp_path, digits_spec, digits_kind,
                                                                               shared_cache, capsys):
    from unlearn.forget.manifest import ForgetManifest
    from unlearn.harness import Workspace

    text = "worst-case-class:1:upper_iters=3"
    built = []
    for name in ("a", "b"):
        runner = make_grid(digits_spec, digits_kind, Workspace.at(tmp_path / name, cache_dir=shared_cache),
                           ["retrain"], [text], [0])
        built.append(runner.models.build_manifest(ForgetSpec.parse(text), 0))
    a, b = (m.model_dump(exclude={"checksum"}) for m in built)
    assert a["provenance"].pop("seconds") > 0 and b["provenance"].pop("seconds") > 0
    assert a == b  # everything but the time taken

    path = manifest_path(tmp_path / "b/data/forget-sets", "digits", ForgetSpec.parse(text), 0, "digits")
    fields = built[1].model_dump(exclude={"checksum"})
    path.write_text(ForgetManifest.sealed(**{**fields, "builder_version": 1}).to_json())
    with pytest.raises(UserError, match="version 1 of the worst-case-class builder"):
        runner.models.build_manifest(ForgetSpec.parse(text), 0)

    assert main(["forget-set", "show", str(manifest_path(tmp_path / "a/data/forget-sets", "digits",
                                                          ForgetSpec.parse(text), 0, "digits"))]) == 0
    out = capsys.readouterr().out
    assert "converged" in out and f"the set is iteration {built[0].provenance['convergence']['best_iteration']}'s" in out


@pytest.mark.parametrize("text, message", [
    ("worst-case:0", r"outside \(0, 1\)"),
    ("worst-case:1", r"outside \(0, 1\)"),
    ("worst-case:0.1:upper_lr=0", "greater than 0"),
    ("worst-case:0.1:lower=scratch", "lower"),
    ("worst-case:0.1:steps=3", "steps"),
    ("worst-case-class:x", "integer"),
])
def test_malformed_worst_case_specs_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        ForgetSpec.parse(text)


def test_canonical_text_drops_defaults_and_orders_options():
    assert ForgetSpec.parse("worst-case:0.10:upper_lr=1e4").text == "worst-case:0.1"
    # the class-wise kind trains 1 lower epoch by default: 2 (the data-wise default) must be kept
    two = ForgetSpec.parse("worst-case-class:1:lower_epochs=2")
    assert two.text == "worst-case-class:1:lower_epochs=2" and two.builder.settings(two.params).lower_epochs == 2
    assert ForgetSpec.parse("worst-case-class:1:lower_epochs=1").text == "worst-case-class:1"
    assert ForgetSpec.parse("worst-case:0.1:objective=easiest:lower=retrain").text == \
        "worst-case:0.1:lower=retrain:objective=easiest"


@pytest.mark.parametrize("args, message", [
    (["worst-case-class", "--classes", "10"], "selects 10 of 10 classes"),
    (["worst-case-class", "--classes", "0"], "selects 0 of 10 classes"),
    (["worst-case", "--fraction", "0.0001"], "selects 0 of 1259"),
    (["worst-case"], "give the size"),
])
def test_bad_budgets_exit_2_and_write_nothing(tmp_path, args, message, capsys):
    code = main(["forget-set", "build", *args, "--workdir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert files_under(tmp_path / "data") == []


def test_run_builds_the_set_on_first_use_and_reuses_it(tmp_path, shared_cache, capsys):
    argv = ["run", "--methods", "retrain", "--forget", "worst-case:0.1:upper_iters=2", "--seeds", "0",
            "--workdir", str(tmp_path), "--cache-dir", str(shared_cache), "--no-progress"]
    assert main(argv) == 0
    path = tmp_path / "data/forget-sets/digits/digits/worst-case-0.1_upper_iters=2-seed0.json"
    first = path.read_text()
    record = json.loads(next((tmp_path / "data/runs").rglob("*.json")).read_text())
    assert record["forget"]["sha256"] == json.loads(first)["sha256"]
    assert record["oracle_metrics"]["UA"] <= 2.0, "the oracle classifies the hardest set almost perfectly"
    capsys.readouterr()
    assert main(["forget-set", "show", str(path)]) == 0
    assert "checksum ok" in capsys.readouterr().out
    path.write_text(first.replace('"objective"', '"objectiv"', 1))  # corrupted: set aside and rebuilt
    assert main([*argv, "--retry-failed"]) == 0
    rebuilt, before = read_manifest(path), json.loads(first)
    assert rebuilt.indices == before["indices"] and rebuilt.provenance["trajectory"] == before["provenance"]["trajectory"]
    assert path.with_name(path.name + ".corrupt").exists()


def test_committed_digits_worst_case_sets_belong_to_the_current_original_models(tmp_path, digits_spec, digits_kind,
                                                                                  monkeypatch):
    from unlearn.harness import Workspace
    from unlearn.spec import REPO_ROOT

    committed = sorted((REPO_ROOT / "data/forget-sets/digits/digits").glob("*.json"))
    assert committed, "scripts/worst_case.py's sets are committed"
    monkeypatch.setattr(worst_case_module, "select", lambda *a, **k: pytest.fail("a committed set was rebuilt"))
    shutil.copytree(REPO_ROOT / "data/forget-sets", tmp_path / "forget-sets")  # a failure never touches the repo
    workspace = Workspace.at(tmp_path, forget_dir=tmp_path / "forget-sets")
    runner = make_grid(digits_spec, digits_kind, workspace, ["retrain"], ["random:0.1"], [0])
    for path in committed:
        stored = read_manifest(path)
        # the checksum holds, the data and the original model's key match: `unlearn run` uses it as it is
        assert runner.models.build_manifest(ForgetSpec.parse(stored.spec), stored.seed) == stored, path.name
