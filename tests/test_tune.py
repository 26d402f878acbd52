"""`unlearn tune`: chosen on validation data only, written into the spec, reused by later runs."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from conftest import FIXTURE_SPECS

from unlearn import tune as tuning
from unlearn.cli import main
from unlearn.data.tensors import TensorData
from unlearn.harness import Classification, Grid, Workspace, choose_method, plan_grid
from unlearn.spec import load_benchmark, read_spec

FAST = ["--grid", "lr=0.005,0.07", "--grid", "epochs=3", "--forget", "class:3", "--seeds", "0", "--no-progress"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def trials_on(task: Classification, spec, workspace: Workspace, trials):
    spec = tuning.tuning_spec(spec)

    def run_trial(values):
        return Grid(plan_grid(spec, ["finetune"], ["class:3"], [0], {"finetune": values}), task, workspace).run().records

    return tuning.tune(spec, "finetune", ["class:3"], [0], trials, run_trial)


def test_the_choice_never_depends_on_the_test_set(tmp_path, digits_spec, digits_kind, shared_cache):
    trials = tuning.search_grid("finetune", {"lr": [0.005, 0.07], "epochs": [3]})
    honest = trials_on(digits_kind, digits_spec, Workspace.at(tmp_path / "a", cache_dir=shared_cache), trials)

    # The same benchmark with its test set replaced by noise and shuffled labels.
    test = digits_kind.dataset.test
    gen = torch.Generator().manual_seed(0)
    noise = TensorData(torch.rand(test.x.shape, generator=gen), test.y[torch.randperm(len(test), generator=gen)],
                       test.index)
    scrambled = Classification(digits_spec, dataclasses.replace(digits_kind.dataset, test=noise), digits_kind.device)
    blind = trials_on(scrambled, digits_spec, Workspace.at(tmp_path / "b", cache_dir=shared_cache), trials)

    assert [t.gap for t in blind.trials] == [t.gap for t in honest.trials]
    assert blind.best.values == honest.best.values
    assert honest.metrics == ["UA", "RA", "VA", "MIA-Efficacy-val"]
    # ... while the test accuracy the table reports did change: the choice really ignored it.
    records = Grid(plan_grid(digits_spec, ["finetune"], ["class:3"], [0], {"finetune": trials[0]}), scrambled,
                     Workspace.at(tmp_path / "b", cache_dir=shared_cache)).run().records
    assert records[0].metrics["TA"] < 50.0 < records[0].metrics["VA"]


def test_tune_writes_the_choice_into_the_spec_keeping_its_comments(tmp_path, shared_cache, capsys):
    spec_path = tmp_path / "digits.yaml"
    shutil.copy(FIXTURE_SPECS / "digits.yaml", spec_path)
    before = spec_path.read_text()
    code, out, err = run(capsys, "tune", "--method", "finetune", "--benchmark", str(spec_path), *FAST,
                         "--workdir", str(tmp_path), "--cache-dir", str(shared_cache))
    assert code == 0, err

    report = json.loads((tmp_path / "data/tune/digits/tuning/finetune.json").read_text())
    gaps = {json.dumps(t["values"], sort_keys=True): t["gap"] for t in report["trials"]}
    best = min(report["trials"], key=lambda t: t["gap"])
    assert len(gaps) == 2 and report["chosen"] == best["values"]
    assert report["tuning_metrics"] == ["UA", "RA", "VA", "MIA-Efficacy-val"]

    spec = read_spec(spec_path)
    assert spec.hparams["finetune"] == {**load_benchmark("digits").hparams["finetune"], **best["values"]}
    comments = [line for line in before.splitlines() if line.startswith("#")]
    after = spec_path.read_text()
    assert all(line in after.splitlines() for line in comments)
    assert "# tuned: validation gap" in after
    # A later run (any forget set) starts from the written values.
    assert choose_method(spec, "finetune").hparams.lr == best["values"]["lr"]
    assert "*" in out.splitlines()[1]  # the chosen trial leads the table


def test_no_write_leaves_the_spec_alone(tmp_path, shared_cache, capsys):
    spec_path = tmp_path / "digits.yaml"
    shutil.copy(FIXTURE_SPECS / "digits.yaml", spec_path)
    before = spec_path.read_bytes()
    code, _, err = run(capsys, "tune", "--method", "finetune", "--benchmark", str(spec_path), *FAST, "--no-write",
                       "--workdir", str(tmp_path), "--cache-dir", str(shared_cache))
    assert code == 0 and "unchanged" in err
    assert spec_path.read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "finetun"], "unknown method 'finetun'"),
        (["--method", "finetune", "--grid", "momentun=0.5"], "unknown hyperparameter 'momentun'"),
        (["--method", "finetune", "--grid", "lr=-0.1,0.1"], "finetune.lr"),
        (["--method", "finetune", "--grid", "lr="], "--grid expects NAME=V1,V2"),
        (["--method", "grad-ascent", "--grid", "lr=1e12", "--grid", "epochs=2", "--grid", "max_grad_norm=null",
          "--forget", "class:3", "--seeds", "0"], "every trial of 'grad-ascent' failed"),
    ],
)
def test_bad_tuning_requests_are_one_line_errors(tmp_path, shared_cache, capsys, args, message):
    spec_path = tmp_path / "digits.yaml"
    shutil.copy(FIXTURE_SPECS / "digits.yaml", spec_path)
    before = spec_path.read_bytes()
    code, _, err = run(capsys, "tune", *args, "--benchmark", str(spec_path), "--workdir", str(tmp_path),
                       "--cache-dir", str(shared_cache), "--no-progress")
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("unlearn: error:") and message in last
    if "hyperparameter" in message or ".lr" in message:
        assert "valid: epochs=" in last  # the error names the method's options
    assert spec_path.read_bytes() == before


def test_tuning_runs_on_corrective_and_worst_case_sets(tmp_path, shared_cache, capsys):
    code, out, err = run(capsys, "tune", "--method", "random-label", "--grid", "lr=0.005,0.01", "--grid", "epochs=2",
                         "--forget", "corrective:poison:0.1:0.5,worst-case:0.1:upper_iters=2", "--seeds", "0",
                         "--no-write", "--no-progress", "--workdir", str(tmp_path), "--cache-dir", str(shared_cache))
    assert code == 0, err
    report = json.loads((tmp_path / "data/tune/digits/tuning/random-label.json").read_text())
    for trial in report["trials"]:
        assert set(trial["gap_by_forget"]) == {"corrective:poison:0.1:0.5", "worst-case:0.1:upper_iters=2"}
    assert "corrective:poison:0.1:0.5  worst-case:0.1:upper_iters=2" in out  # the columns stay apart
