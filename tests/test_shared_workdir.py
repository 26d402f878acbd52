"""A workdir as runs find it: records that are not their cell's, lock files left behind, and paths blocked by a file or
a directory.

The grids run the small digits copy of tests/test_executors.py (4 training epochs, two metrics) on the session's
model cache, so a cell costs well under a second once its group's models are cached.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_crash_safety import the_error
from test_executors import grid, run
from torch import nn

import unlearn.train as training
from unlearn.cache import ModelCache
from unlearn.errors import StorageError
from unlearn.hashing import stable_hash
from unlearn.locks import file_lock
from unlearn.results import read_record, record_dir
from unlearn.spec import REPO_ROOT


def class3(mini: Path, workdir: Path, cache: Path, methods: str) -> list[str]:
    """`grid`'s arguments with the one forget set class:3."""
    args = grid(mini, workdir, cache, methods)
    args[args.index("--forget") + 1] = "class:3"
    return args


def record_of(workdir: Path, method: str) -> Path:
    """The one record of `method` under WORKDIR/data/runs."""
    [path] = (workdir / "data" / "runs").rglob(f"{method}/*.json")
    return path


def test_a_record_that_is_not_its_cells_is_not_reused_and_the_cell_runs_again(mini, shared_cache, tmp_path, capsys):
    """finetune's record copied to random-label's path, and a record whose config was edited under its old hash:
    both cells run again and their records are theirs; the table has no row of a cell that did not run."""
    args = class3(mini, tmp_path, shared_cache, "finetune,random-label")
    code, _, err = run(capsys, *args)
    assert code == 0 and "2 cells run, 0 reused, 0 failed" in err, err
    finetune, random_label = record_of(tmp_path, "finetune"), record_of(tmp_path, "random-label")
    foreign = read_record(finetune)
    shutil.copyfile(finetune, random_label)
    edited = json.loads(finetune.read_text())
    edited["config"]["hparams"]["epochs"] = 99  # config_hash left as it was
    finetune.write_text(json.dumps(edited))

    code, out, err = run(capsys, *args)
    assert code == 0 and "2 cells run, 0 reused, 0 failed" in err, err
    assert (f"warning: {random_label} holds finetune class:3 seed 0 (config {foreign.config_hash[:12]}), not this "
            "cell; running the cell again") in err
    assert (f"warning: {finetune} holds a config that does not hash to its config_hash {foreign.config_hash[:12]}; "
            "running the cell again") in err
    for method, path in (("finetune", finetune), ("random-label", random_label)):
        record = read_record(path)
        assert record.method == method and record.config["method"] == method and record.status == "ok"
        assert stable_hash(record.config) == record.config_hash
        assert path.name == f"seed0-{record.config_hash[:12]}.json"
    header, *lines = out.splitlines()[1:]
    rows = [line.split()[1] for line in lines if len(line) == len(header)]  # table rows: rank, method, ...
    assert sorted(rows) == ["finetune", "original", "random-label", "retrain"], out


def wait_for(condition: Callable[[], bool], what: str, *processes: subprocess.Popen, seconds: float = 180) -> None:
    """Poll `condition` until it holds; fail if it does not within `seconds` or a process ends first."""
    deadline = time.monotonic() + seconds
    while not condition():
        ended = [p for p in processes if p.poll() is not None]
        if ended or time.monotonic() > deadline:
            pytest.fail(f"{what}: a run ended first ({ended[0].args})" if ended else f"{what}: not after {seconds} s")
        time.sleep(0.05)


def test_two_runs_on_one_workdir_compute_each_cell_once_and_print_the_same_table(mini, shared_cache, tmp_path):
    """A first `unlearn run` holds its first cell open (plugin_methods:Gate); a second one on the same workdir and
    cache starts meanwhile. Between them each of the 6 cells is computed once, and both print the same table."""
    calls, go, work = tmp_path / "gate-calls", tmp_path / "go", tmp_path / "work"
    gate = "plugin_methods:Gate"
    command = [sys.executable, "-m", "unlearn", *grid(mini, work, shared_cache, f"{gate},finetune,random-label"),
               "--hparam", f"{gate}.calls={calls}", "--hparam", f"{gate}.go={go}"]
    path = [str(REPO_ROOT), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": os.pathsep.join(path)}
    runs: list[subprocess.Popen] = []

    def start(name: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w") as err:
            runs.append(subprocess.Popen(command, stdout=out, stderr=err, env=env))
        return runs[-1]

    def gated() -> int:
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    try:
        first = start("first")
        wait_for(lambda: gated() == 1, "the first run at its gate", first)
        second = start("second")
        wait_for(lambda: gated() == 2 or "[2/6] finetune" in (tmp_path / "second.err").read_text(),
                 "the second run past the gate's cell, or in it", first, second)
        go.touch()
        codes = [p.wait(timeout=300) for p in runs]
    finally:
        for p in runs:
            p.kill()
            p.wait()
    err = [(tmp_path / f"{name}.err").read_text() for name in ("first", "second")]
    assert codes == [0, 0], err
    counts = [re.search(r"unlearn: (\d+) cells run, (\d+) reused, 0 failed", e) for e in err]
    assert all(counts), err
    ran, reused = zip(*((int(m.group(1)), int(m.group(2))) for m in counts), strict=True)
    assert sum(ran) == 6 and [r + u for r, u in zip(ran, reused, strict=True)] == [6, 6], err
    assert gated() == 2  # one gate cell per forget set, each run once
    assert "reused, written by another run" in err[1]
    out = [(tmp_path / f"{name}.out").read_text() for name in ("first", "second")]
    assert out[0] == out[1] and "Gate" in out[0]
    assert len(list((work / "data" / "runs").rglob("*.json"))) == 6 and not list(work.rglob("*.lock"))


def test_a_run_removes_the_lock_files_nobody_holds_and_leaves_the_held_ones(mini, shared_cache, tmp_path, capsys):
    """Empty lock files as a run killed with SIGKILL leaves them, in the model cache and in a results directory of the
    grid, next to lock files another process holds (here, this one through another descriptor)."""
    records = record_dir(tmp_path / "data" / "runs", "digits-mini", "finetune", "class:3")
    name = f".{tmp_path.name}.safetensors.lock"
    stale = [shared_cache / "original" / name, records / ".seed7-000000000000.json.lock"]
    held = [shared_cache / "unlearned" / name, records / ".seed8-000000000000.json.lock"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    args = class3(mini, tmp_path, shared_cache, "finetune")
    with file_lock(held[0]) as first, file_lock(held[1]) as second:
        assert first and second
        code, _, err = run(capsys, *args)
        assert code == 0, err
        assert [p.exists() for p in stale + held] == [False, False, True, True]


def test_a_directory_at_a_records_path_stops_the_run_in_one_line_naming_it(mini, shared_cache, tmp_path, capsys):
    args = class3(mini, tmp_path, shared_cache, "finetune")
    assert run(capsys, *args)[0] == 0
    path = record_of(tmp_path, "finetune")
    path.unlink()
    (path / "notes").mkdir(parents=True)
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert the_error(err).startswith(f"unlearn: error: cannot write result record {path}: Is a directory; {path} is a "
                                     "directory in the way; remove or rename it, then rerun the same command")
    assert (path / "notes").is_dir()


@pytest.mark.parametrize("kind", ["original", "unlearned"])
def test_a_file_at_a_cache_folder_stops_the_run_in_one_line_before_anything_trains(mini, kind, tmp_path, capsys,
                                                                                   monkeypatch):
    trained: list[int] = []
    real = training.train_with_recipe
    monkeypatch.setattr(training, "train_with_recipe", lambda *a, **k: trained.append(1) or real(*a, **k))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / kind).write_text("not a folder")
    code, out, err = run(capsys, *grid(mini, tmp_path, tmp_path / "cache", "finetune"))
    assert code == 2 and out == "" and trained == []
    assert the_error(err) == (f"unlearn: error: cache directory {tmp_path / 'cache' / kind} is a file, not a "
                              "directory; remove or rename it")
    assert not (tmp_path / "data" / "runs").exists()


def test_a_directory_at_a_cache_entrys_path_is_refused_before_the_model_is_built(tmp_path):
    cache, key, built = ModelCache(tmp_path / "cache"), {"role": "original", "seed": 0}, []
    path = cache.path("original", key)
    (path / "notes").mkdir(parents=True)
    with pytest.raises(StorageError) as caught:
        cache.get_or_build("original", key, lambda: built.append(1) or nn.Linear(2, 2), lambda: nn.Linear(2, 2))
    assert built == [] and str(caught.value).startswith(
        f"cannot write model checkpoint {path}: Is a directory; {path} is a directory in the way; remove or rename it")
