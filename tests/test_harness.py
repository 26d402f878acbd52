"""The harness: oracles, data access, caching, method behaviour and failure records."""

from __future__ import annotations

import plugin_methods
import torch
from conftest import make_grid, spy_oracle_training

from unlearn.cache import ModelCache
from unlearn.forget import ForgetSpec, load_or_build
from unlearn.harness import Scoring, Workspace
from unlearn.results import read_record
from unlearn.spec import Recipe
from unlearn.train import train_with_recipe


def test_training_is_deterministic_for_a_seed(digits_kind):
    recipe = Recipe(epochs=2, batch_size=64, lr=0.05)
    a = train_with_recipe(digits_kind.new_model(0), digits_kind.train, recipe, seed=0)
    b = train_with_recipe(digits_kind.new_model(0), digits_kind.train, recipe, seed=0)
    c = train_with_recipe(digits_kind.new_model(1), digits_kind.train, recipe, seed=1)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.head.weight, c.head.weight)


def test_the_oracle_never_trains_on_a_forget_index(tmp_path, digits_spec, digits_kind, monkeypatch):
    seen = spy_oracle_training(monkeypatch)
    workspace = Workspace.at(tmp_path)  # a fresh cache, so the oracles really train
    runner = make_grid(digits_spec, digits_kind, workspace, ["finetune"], ["random:0.1", "class:3"], [0])
    for text in ("random:0.1", "class:3"):
        manifest = load_or_build(workspace.forget_dir, ForgetSpec.parse(text), digits_kind.dataset, 0)
        runner.prepare_group(ForgetSpec.parse(text), manifest, 0)
        trained_on = seen[-1].index.tolist()
        assert not set(trained_on) & set(manifest.indices)
        assert sorted(trained_on + manifest.indices) == list(range(len(digits_kind.train)))
    assert len(seen) == 2


def test_methods_get_only_what_their_track_grants(digits_spec, digits_kind, workspace):
    plugin_methods.SEEN.clear()
    runner = make_grid(
        digits_spec, digits_kind, workspace, ["plugin_methods:Spy", "plugin_methods:ForgetOnlySpy"], ["random:0.1"], [0]
    )
    runner.run()
    full, forget_only = plugin_methods.SEEN
    manifest = load_or_build(workspace.forget_dir, ForgetSpec.parse("random:0.1"), digits_kind.dataset, 0)
    assert full.forget.index.tolist() == manifest.indices
    assert not set(full.retain.index.tolist()) & set(manifest.indices)
    assert len(full.forget) + len(full.retain) == len(digits_kind.train)
    assert forget_only.retain is None and forget_only.forget.index.tolist() == manifest.indices
    assert set(vars(full)) == {
        "model", "forget", "retain", "num_classes", "device", "seed", "recipe", "new_model", "track", "progress",
        "train_recipe", "forget_classes",
        "info",  # an output: what the method reports about its run
    }


def test_each_method_lowers_forget_accuracy_on_a_classwise_set(digits_spec, digits_kind, workspace):
    methods = ["retrain", "finetune", "grad-ascent", "random-label"]
    result = make_grid(digits_spec, digits_kind, workspace, methods, ["class:3"], [0]).run()
    assert [r.status for r in result.records] == ["ok"] * 4, [r.error for r in result.records]
    for record in result.records:
        original_forget_acc = 100.0 - record.original_metrics["UA"]
        forget_acc = 100.0 - record.metrics["UA"]
        assert original_forget_acc > 95.0
        assert forget_acc < original_forget_acc - 25.0, record.method
    oracle = result.records[0]
    assert oracle.metrics["UA"] > 99.0 and oracle.metrics["TA"] > 95.0
    assert oracle.metrics == oracle.oracle_metrics and oracle.gaps["Avg. Gap"] == 0.0
    for record in result.records:  # an undefined attack is absent, with its reason, and left out of the gaps
        mine, theirs = record.undefined.get("method", {}), record.undefined.get("oracle", {})
        assert all(k not in record.metrics and record.metric_info[name]["undefined"] == mine[k]
                   for name, k in (("mia-efficacy", "MIA-Efficacy"),) if k in mine)
        assert set(record.gaps_left_out) == {k for k in digits_spec.gap_metrics if k in mine or k in theirs}
        assert set(record.gaps) == {*digits_spec.gap_metrics, "Avg. Gap"} - set(record.gaps_left_out)
    assert oracle.undefined.get("method") == oracle.undefined.get("oracle")


def test_the_oracle_cell_takes_the_groups_evaluation_of_the_oracle(digits_spec, digits_kind, workspace, monkeypatch):
    runner = make_grid(digits_spec, digits_kind, workspace, ["retrain", "finetune"], ["class:3"], [0],
                         {"finetune": {"epochs": 1}})
    scored = []
    score = Scoring.score
    monkeypatch.setattr(Scoring, "score", lambda self, evaluation: scored.append(evaluation) or score(self, evaluation))
    oracle, finetune = runner.run().records
    assert len(scored) == 3  # the original, the oracle and finetune's output; the retrain cell is the oracle
    assert oracle.metrics == oracle.oracle_metrics and oracle.gaps["Avg. Gap"] == 0.0
    assert finetune.metrics != finetune.oracle_metrics


def test_a_diverging_method_becomes_a_failed_record_and_the_grid_goes_on(digits_spec, digits_kind, workspace):
    methods = ["plugin_methods:NanWeights", "plugin_methods:Boom", "plugin_methods:WrongShape", "grad-ascent", "retrain",
               "plugin_methods:FreshModel"]
    hparams = {"grad-ascent": {"lr": 1000.0, "max_grad_norm": None, "epochs": 3}}
    result = make_grid(digits_spec, digits_kind, workspace, methods, ["class:3"], [0], hparams).run()
    status = {r.method: (r.status, r.error) for r in result.records}
    assert status["plugin_methods:NanWeights"][0] == "failed"
    assert "NaN" in status["plugin_methods:NanWeights"][1]
    assert status["plugin_methods:Boom"] == ("failed", "RuntimeError: kaboom")
    assert status["plugin_methods:WrongShape"][0] == "failed" and "shape" in status["plugin_methods:WrongShape"][1]
    assert status["grad-ascent"][0] == "failed" and status["grad-ascent"][1].startswith("diverged")
    assert status["retrain"] == ("ok", None)
    collapsed = {r.method: r.collapsed for r in result.records if r.status == "ok"}
    assert collapsed["retrain"] is None  # a collapse is finite but ruined: recorded as ok, and flagged (issue 24)
    assert collapsed["plugin_methods:FreshModel"].startswith("RA ") and "below 50% of the original" in (
        collapsed["plugin_methods:FreshModel"])
    for record in result.records:
        stored = read_record(record_path_of(workspace, record))
        assert stored == record


def record_path_of(workspace, record):
    from unlearn.results import record_path

    return record_path(workspace.results_dir, record.benchmark, record.method, record.forget.spec, record.seed,
                       record.config_hash)


def test_cached_models_are_reused_and_corrupt_entries_rebuilt(tmp_path, digits_kind, capsys):
    cache = ModelCache(tmp_path)
    calls = []
    recipe = Recipe(epochs=1, batch_size=128, lr=0.05)

    def build():
        calls.append(1)
        return train_with_recipe(digits_kind.new_model(0), digits_kind.train, recipe, 0)

    key = {"test": "cache"}
    first = cache.get_or_build("original", key, build, lambda: digits_kind.new_model(0))
    second = cache.get_or_build("original", key, build, lambda: digits_kind.new_model(0))
    assert (first.hit, second.hit, len(calls)) == (False, True, 1)
    assert torch.equal(first.model.head.weight, second.model.head.weight)
    cache.path("original", key).write_bytes(b"\x80\x04not a safetensors file")  # e.g. a pickle
    third = cache.get_or_build("original", key, build, lambda: digits_kind.new_model(0))
    assert not third.hit and len(calls) == 2
    assert "ignoring unusable cache entry" in capsys.readouterr().err


def test_table_leads_with_the_oracle_even_without_a_retrain_cell(digits_spec, digits_kind, workspace):
    from unlearn.leaderboard import summarize

    result = make_grid(digits_spec, digits_kind, workspace, ["random-label"], ["class:3"], [0]).run()
    (table,) = summarize(result.records, ["UA", "Avg. Gap", "RTE (s)"])
    assert (table.benchmark, table.forget) == ("digits", "class:3")
    assert [r.method for r in table.rows] == ["retrain", "original", "random-label"]
    assert table.row("retrain").stats["UA"].mean == result.records[0].oracle_metrics["UA"]
    assert table.row("retrain").stats["RTE (s)"].text() == "—"
    assert (table.row("random-label").ok, table.row("random-label").runs) == (1, 1)


def test_gap_metrics_no_metric_produces_are_refused_before_anything_runs(digits_spec):
    import pytest

    from unlearn.errors import UserError
    from unlearn.harness import plan_grid

    spec = digits_spec.model_copy(update={"gap_metrics": ["UA", "MIA-Nonexistent"]})
    with pytest.raises(UserError, match="MIA-Nonexistent"):
        plan_grid(spec)
