"""Evaluating a checkpoint: `unlearn.load_model` rebuilds a benchmark's model around exported weights (the README's
example runs as written), pickled whole models get the state-dict advice, the suggested conversion never overwrites
a file, and `evaluate --json/--output` carry a record's provenance."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import unlearn
from unlearn.checkpoints import read_checkpoint, save_weights
from unlearn.cli import main
from unlearn.errors import UserError
from unlearn.hashing import stable_hash
from unlearn.results import Environment, read_record
from unlearn.spec import REPO_ROOT

CELL = ["--benchmark", "digits", "--forget", "class:3", "--seed", "0"]


def options(workspace) -> list[str]:
    return ["--workdir", str(workspace.results_dir.parent.parent), "--cache-dir", str(workspace.cache_dir),
            "--device", "cpu", "--no-progress"]


def test_import_unlearn_stays_free_of_torch_and_load_model_is_found_on_use():
    code = "import sys, unlearn; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    from unlearn.evaluate import load_model

    assert unlearn.load_model is load_model and not hasattr(unlearn, "no_such_thing")


def _readme_example() -> str:
    """The README's Python block that uses unlearn.load_model."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S)
    found = [b for b in blocks if "unlearn.load_model" in b]
    assert len(found) == 1, "the README shows load_model in one Python block"
    return found[0]


def test_the_readme_s_load_model_example_runs_and_changes_only_what_it_says(tmp_path, monkeypatch):
    original = unlearn.load_model("digits", seed=1)  # stands in for `unlearn export`'s trained original
    (tmp_path / "start").mkdir()
    save_weights(original, tmp_path / "start" / "original.safetensors", {"benchmark": "digits"})
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_example(), "README.md", "exec"), {})
    edited = unlearn.load_model("digits", tmp_path / "unlearned.safetensors")
    assert type(edited) is type(original)
    before, after = original.state_dict(), edited.state_dict()
    assert sorted(before) == sorted(after)
    assert torch.count_nonzero(after["head.weight"][3]) == 0 and torch.count_nonzero(before["head.weight"][3]) > 0
    assert torch.equal(after["head.weight"][:3], before["head.weight"][:3])
    assert all(torch.equal(before[k], after[k]) for k in before if k != "head.weight")


def test_load_model_checks_what_it_loads(tmp_path):
    a, b = unlearn.load_model("digits", seed=0), unlearn.load_model("digits", seed=1)
    assert not torch.equal(a.head.weight, b.head.weight)  # each seed its own initialisation
    save_weights(nn.Linear(3, 2), tmp_path / "other.safetensors")
    with pytest.raises(UserError, match="weights do not fit the model"):
        unlearn.load_model("digits", tmp_path / "other.safetensors")
    torch.save(a.state_dict(), tmp_path / "a.pt")
    with pytest.raises(UserError, match="pickle"):
        unlearn.load_model("digits", tmp_path / "a.pt")
    loaded = unlearn.load_model("digits", tmp_path / "a.pt", seed=1, allow_pickle=True)
    assert torch.equal(loaded.head.weight, a.head.weight)


def _message(path: Path, allow_pickle: bool = False) -> str:
    with pytest.raises(UserError) as info:
        read_checkpoint(path, allow_pickle=allow_pickle)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("allow", [False, True], ids=["refused", "allow-pickle"])
def test_a_pickled_whole_model_is_told_to_save_its_state_dict(tmp_path, allow):
    torch.save(nn.Sequential(nn.Linear(3, 2)), tmp_path / "model.pt")  # torch.save(model), the common case
    message = _message(tmp_path / "model.pt", allow)
    assert "model.state_dict()" in message and "torch.save(model)" in message
    if allow:
        assert "torch.nn.modules.container.Sequential" in message


def _command(message: str) -> str:
    """The python -c command a refusal suggests, unquoted: its Python code."""
    found = re.search(r"python -c ('(?:[^']|'\"'\"')*')", message)
    assert found, message
    return shlex.split(found.group(1))[0]


def test_the_suggested_conversion_never_overwrites_a_safetensors_file(tmp_path):
    state = {"weight": torch.arange(6.0).reshape(2, 3), "bias": torch.ones(2)}
    torch.save(state, tmp_path / "m.pt")
    (tmp_path / "m.safetensors").write_bytes(b"someone's other model")
    code = _command(_message(tmp_path / "m.pt"))
    exec(code, {})  # what the user runs
    assert (tmp_path / "m.safetensors").read_bytes() == b"someone's other model"
    converted = read_checkpoint(tmp_path / "m-2.safetensors")
    assert all(torch.equal(converted[k], v) for k, v in state.items()) and sorted(converted) == sorted(state)

    code = _command(_message(tmp_path / "m.pt"))  # now names m-3.safetensors
    (tmp_path / "m-3.safetensors").write_bytes(b"made in the meantime")
    with pytest.raises(FileExistsError):
        exec(code, {})
    assert (tmp_path / "m-3.safetensors").read_bytes() == b"made in the meantime"


def test_evaluate_json_and_output_carry_the_record_s_provenance(capsys, tmp_path, workspace):
    checkpoint = tmp_path / "init.safetensors"
    save_weights(unlearn.load_model("digits", seed=0), checkpoint)
    out = tmp_path / "scores" / "score.json"
    code = main(["evaluate", *CELL, "--checkpoint", str(checkpoint), "--json", "--output", str(out),
                 *options(workspace)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    score = json.loads(printed.out)
    assert json.loads(out.read_text()) == score
    assert [p.name for p in out.parent.iterdir()] == ["score.json"]  # no temporary file left
    Environment.model_validate(score["env"])  # a record's env block
    assert score["env"]["packages"]["torch"] not in ("", "not installed")
    assert score["config_hash"] == stable_hash(score["config"])
    assert score["config"]["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()

    # the same cell run by the harness: its record's config is the evaluation's, method for checkpoint
    assert main(["run", *CELL[:2], "--methods", "retrain", "--forget", "class:3", "--seeds", "0",
                 *options(workspace)]) == 0
    capsys.readouterr()
    record = read_record(next(workspace.results_dir.rglob("retrain/seed0-*.json")))
    method_keys = {"method", "method_origin", "hparams", "track"}
    assert {k: v for k, v in record.config.items() if k not in method_keys} == {
        k: v for k, v in score["config"].items() if k != "checkpoint_sha256"}
    assert score["env"]["packages"] == record.env.packages


def test_evaluate_refuses_an_output_path_that_is_a_directory_before_scoring(capsys, tmp_path, workspace):
    (tmp_path / "taken").mkdir()
    code = main(["evaluate", *CELL, "--checkpoint", str(tmp_path / "missing.safetensors"),
                 "--output", str(tmp_path / "taken"), *options(workspace)])
    err = capsys.readouterr().err
    assert code == 2 and "is a directory" in err and err.count("\n") == 1, err
