"""Banks of models per cell feed the ε score and U-LiRA; they are cached, shared and checked up front."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURE_SPECS

from unlearn.banks import cell_banks
from unlearn.cli import main
from unlearn.errors import UserError
from unlearn.forget import load_or_build
from unlearn.harness import Classification, Grid, Workspace, plan_grid
from unlearn.spec import BankSettings, EvaluationSettings, parse_spec
from unlearn.train import train_with_recipe

N = 5


@pytest.fixture(scope="module")
def bank_spec(digits_spec):
    """Digits with a 5-epoch recipe (cheap banks), the ε score and U-LiRA on banks of N = 5."""
    train = digits_spec.train.model_copy(update={"epochs": 5})
    evaluation = EvaluationSettings(bank=BankSettings(size=N, mode="sequential"))
    return digits_spec.model_copy(update={
        "train": train, "metrics": ["accuracy", "mia-efficacy", "epsilon", "ulira"], "evaluation": evaluation,
        "report_metrics": [],
    })


@pytest.fixture(scope="module")
def bank_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bank-cache")


def run_grid(spec, digits_kind, tmp_path: Path, cache: Path, methods):
    workspace = Workspace.at(tmp_path / "work", cache_dir=cache)
    kind = Classification(spec, digits_kind.dataset, torch.device("cpu"))
    runner = Grid(plan_grid(spec, methods, ["random:0.1"], [0]), kind, workspace)
    return runner, runner.run().records


def test_epsilon_and_ulira_run_on_banks_with_their_sizes_recorded(bank_spec, digits_kind, tmp_path, bank_cache):
    runner, records = run_grid(bank_spec, digits_kind, tmp_path, bank_cache, ["retrain", "random-label"])
    retrain, rl = records
    assert retrain.status == rl.status == "ok"
    for r in records:
        assert r.metrics["Epsilon-N"] == N and r.metrics["U-LiRA-N"] == N
        assert r.metric_info["epsilon"]["n_models"] == N and r.metric_info["ulira"]["n_shadows"] == N
    # No unlearning: the original's "bank" is N copies of one model, which the range rule scores 0.
    assert retrain.original_metrics["Epsilon-F"] == 0.0
    # The retrain row (an independent retrain bank) is the ceiling the benchmark resolves at this N.
    assert retrain.metrics["Epsilon-F"] > 0.0
    assert retrain.metrics["Epsilon-F"] == retrain.oracle_metrics["Epsilon-F"]
    # The oracle bank is built once for the cell and shared by every method scored on it.
    assert rl.metric_info["epsilon"]["oracle_bank"] == retrain.metric_info["epsilon"]["oracle_bank"]


def test_oracle_bank_members_are_retrain_at_derived_seeds_and_come_back_from_the_cache(
    bank_spec, digits_kind, tmp_path, bank_cache
):
    runner, _ = run_grid(bank_spec, digits_kind, tmp_path, bank_cache, ["retrain"])
    manifest = load_or_build(runner.workspace.forget_dir, runner.plan.forgets[0], runner.kind.dataset, 0)
    _, group = runner.prepare_group(runner.plan.forgets[0], manifest, 0)
    bank = cell_banks(group, runner.models).oracle_bank()
    assert bank.how == "cache" and len(bank) == N and len(set(bank.seeds)) == N
    retain = group.splits["retain"]
    assert not set(retain.index.tolist()) & set(manifest.indices)  # the bank trains on D_r only
    first = train_with_recipe(runner.kind.new_model(bank.seeds[0]), retain, bank_spec.train, bank.seeds[0])
    member = bank.evaluations[0].model.state_dict()
    assert all(torch.equal(v, member[k]) for k, v in first.state_dict().items())


def test_banks_smaller_than_three_are_refused_naming_the_reason(digits_spec):
    data = yaml.safe_load((FIXTURE_SPECS / "digits.yaml").read_text())
    for size in (1, 2):
        data["evaluation"] = {"bank": {"size": size}}
        with pytest.raises(UserError, match="evaluation.bank.size: .*use N >= 3"):
            parse_spec(yaml.safe_dump(data), "spec.yaml")


def test_a_metric_whose_dependency_is_missing_stops_before_anything_runs(digits_spec, tmp_path, capsys):
    data = yaml.safe_load((FIXTURE_SPECS / "digits.yaml").read_text())
    data["metrics"] = [*data["metrics"], "epsilon"]
    spec_path = tmp_path / "eps.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    workdir = tmp_path / "work"
    code = main(["run", "--benchmark", str(spec_path), "--workdir", str(workdir), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "metric 'epsilon' needs oracle-bank" in err and "bank: {size: N}" in err
    assert len(err.strip().splitlines()) == 1 and not (workdir / "data").exists()

    data["evaluation"] = {"bank": {"size": 3}}
    spec_path.write_text(yaml.safe_dump(data))
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"not used")
    code = main(["evaluate", "--benchmark", str(spec_path), "--forget", "class:3", "--seed", "0",
                 "--checkpoint", str(fake), "--workdir", str(workdir)])
    err = capsys.readouterr().err
    assert code == 2 and "metric 'epsilon' needs method-bank" in err and "only `unlearn run`" in err


def test_unlearn_metrics_lists_every_metric_with_what_it_needs(capsys):
    from unlearn.metrics import METRICS

    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{name} " in f"\n{out}" for name in METRICS.names())
    epsilon_block = out[out.index("epsilon"):].splitlines()[1]
    assert "needs: oracle-bank, method-bank" in epsilon_block and "Epsilon-N" in epsilon_block


def test_independent_originals_bank_holds_the_originals_of_cells_with_those_seeds(bank_spec, digits_kind, tmp_path,
                                                                                     bank_cache):
    evaluation = bank_spec.evaluation.model_copy(
        update={"bank": BankSettings(size=3, mode="sequential", originals="independent")}
    )
    spec = bank_spec.model_copy(update={"evaluation": evaluation, "metrics": ["accuracy", "mia-efficacy", "epsilon"]})
    runner, records = run_grid(spec, digits_kind, tmp_path, bank_cache, ["grad-ascent"])
    assert records[0].status == "ok" and records[0].metrics["Epsilon-N"] == 3
    assert records[0].metric_info["epsilon"]["method_bank"]["how"] == "method runs from independent originals"
    manifest = load_or_build(runner.workspace.forget_dir, runner.plan.forgets[0], runner.kind.dataset, 0)
    _, group = runner.prepare_group(runner.plan.forgets[0], manifest, 0)
    bank = cell_banks(group, runner.models).method_bank(None)
    assert bank.how == "cache" and len(set(bank.seeds)) == 3
    for seed, member in zip(bank.seeds, bank.evaluations, strict=True):
        original = runner.models.load_or_train_original(seed).model.state_dict()
        assert all(torch.equal(v, original[k]) for k, v in member.model.state_dict().items())
