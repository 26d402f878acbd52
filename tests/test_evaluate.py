"""`unlearn export` and `unlearn evaluate`: score a model unlearned outside the harness, refuse unsafe files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from conftest import files_under
from safetensors.torch import save_file

from unlearn.checkpoints import save_weights
from unlearn.cli import main
from unlearn.harness import Grid, plan_grid

CELL = ["--benchmark", "digits", "--forget", "class:3", "--seed", "0"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def options(workspace) -> list[str]:
    return ["--workdir", str(workspace.results_dir.parent.parent), "--cache-dir", str(workspace.cache_dir),
            "--device", "cpu", "--no-progress"]


class Payload:
    """Unpickling this object would run code that creates a file."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').write('pwned')",))


def test_exported_original_scores_as_the_original_model(capsys, tmp_path, workspace):
    code, out, err = run(capsys, "export", *CELL, "--out", str(tmp_path / "start"), *options(workspace))
    assert code == 0, err
    manifest = json.loads((tmp_path / "start" / "forget-set.json").read_text())
    assert manifest["size"] == len(manifest["indices"]) > 0
    code, out, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(tmp_path / "start" / "original.safetensors"),
                         "--json", *options(workspace))
    assert code == 0, err
    score = json.loads(out)
    assert score["metrics"] == score["original_metrics"]
    assert score["metrics"]["UA"] < 5 and score["oracle_metrics"]["UA"] > 95  # the original still knows class 3
    assert score["gaps"]["Avg. Gap"] > 20


def test_the_oracle_itself_evaluates_to_zero_gap(capsys, tmp_path, digits_spec, digits_kind, workspace):
    plan = plan_grid(digits_spec, ["retrain"], ["class:3"], [0])
    runner = Grid(plan, digits_kind, workspace)
    from unlearn.forget import load_or_build

    manifest = load_or_build(workspace.forget_dir, plan.forgets[0], digits_kind.dataset, 0)
    _, group = runner.prepare_group(plan.forgets[0], manifest, 0)
    oracle = group.oracle_eval.model  # the oracle the group loaded, saved as a checkpoint
    save_weights(oracle, tmp_path / "oracle.safetensors")
    code, out, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(tmp_path / "oracle.safetensors"),
                         *options(workspace))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("digits · forget class:3 · seed 0")
    checkpoint_row = next(line for line in lines if line.startswith("checkpoint"))
    assert checkpoint_row.split()[5] == "0.00"  # Avg. Gap, after UA, RA, TA, MIA-Efficacy
    assert checkpoint_row.split()[1] == "100.00"  # UA: class 3 is forgotten


@pytest.mark.parametrize("form", ["raw-pickle", "torch-save", "renamed-safetensors"])
@pytest.mark.parametrize("allow", [False, True], ids=["refused", "allow-pickle"])
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(capsys, tmp_path, workspace, form, allow):
    target = tmp_path / "pwned"
    path = tmp_path / ("evil.safetensors" if form == "renamed-safetensors" else "evil.pt")
    if form == "torch-save":
        torch.save({"head.weight": Payload(target)}, path)
    else:
        path.write_bytes(pickle.dumps({"head.weight": Payload(target)}))
    assert not target.exists()
    extra = ["--allow-pickle"] if allow else []
    code, out, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(path), *extra, *options(workspace))
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert ("weights-only" in err or "weights_only" in err) if allow else "pickle" in err
    assert not target.exists()
    # the payload is real: a plain unpickle does run it
    pickle.loads(pickle.dumps(Payload(target)))
    assert target.exists()


def test_allow_pickle_loads_a_plain_state_dict_with_weights_only(capsys, tmp_path, digits_kind, workspace):
    path = tmp_path / "model.pt"
    torch.save(digits_kind.new_model(0).state_dict(), path)
    code, _, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(path), *options(workspace))
    assert code == 2 and "--allow-pickle" in err
    code, out, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(path), "--allow-pickle", "--json",
                         *options(workspace))
    assert code == 0, err
    assert json.loads(out)["metrics"]["TA"] < 50  # an untrained model


def test_checkpoint_of_another_model_names_the_first_mismatches(capsys, tmp_path, digits_kind, workspace):
    save_file({"weight": torch.zeros(3, 3)}, str(tmp_path / "linear.safetensors"))
    code, _, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(tmp_path / "linear.safetensors"),
                       *options(workspace))
    assert code == 2 and "missing" in err and "unexpected ['weight']" in err and err.count("\n") == 1
    state = {k: v.clone() for k, v in digits_kind.new_model(0).state_dict().items()}
    state["head.weight"] = torch.zeros(5, state["head.weight"].shape[1])
    save_file(state, str(tmp_path / "narrow.safetensors"))
    code, _, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(tmp_path / "narrow.safetensors"),
                       *options(workspace))
    assert code == 2 and "shape of head.weight: (5," in err


def test_non_finite_weights_are_refused(capsys, tmp_path, digits_kind, workspace):
    state = {k: v.clone() for k, v in digits_kind.new_model(0).state_dict().items()}
    state["head.bias"][0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"))
    code, _, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(tmp_path / "nan.safetensors"),
                       *options(workspace))
    assert code == 2 and "finite" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "word"),
    [(b"", "empty"), (b"hello, this is not a model\n", "not a checkpoint"), (None, "truncated")],
    ids=["empty", "text", "truncated"],
)
def test_unreadable_files_each_get_their_own_message(capsys, tmp_path, digits_kind, workspace, content, word):
    path = tmp_path / "model.safetensors"
    if content is None:
        save_weights(digits_kind.new_model(0), path)
        path.write_bytes(path.read_bytes()[:-100])
    else:
        path.write_bytes(content)
    code, _, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(path), *options(workspace))
    assert code == 2 and word in err and err.count("\n") == 1, err
    assert files_under(workspace.results_dir) == []


def test_missing_checkpoint_fails_before_any_training(capsys, tmp_path, workspace):
    code, _, err = run(capsys, "evaluate", *CELL, "--checkpoint", str(tmp_path / "absent.safetensors"),
                       "--workdir", str(tmp_path / "w"), "--cache-dir", str(tmp_path / "fresh-cache"))
    assert code == 2 and "no such file" in err
    assert files_under(tmp_path / "fresh-cache") == []
