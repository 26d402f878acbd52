"""`unlearn submit` replaces a method's records as one transaction that `unlearn leaderboard` waits for and finishes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import FIXTURE_RESULTS

from unlearn.cli import main
from unlearn.leaderboard.store import collect
from unlearn.results import read_record
from unlearn.spec import REPO_ROOT

RESULTS = FIXTURE_RESULTS
FINETUNE = "digits/*/finetune/*.json"
STAGING = ".staging-0123456789abcdef"

KILL_MID_APPLY = """
import os, sys
from unlearn.cli import main

board, real, placed = sys.argv[1], os.replace, []

def replace(src, dst, *args, **kwargs):
    where = os.fspath(dst)
    if where.startswith(board) and "/finetune/" in where and "/." not in where[len(board):]:
        if len(placed) == 3:
            os._exit(9)  # killed after 3 of the 6 new records reached their place on the board
        placed.append(where)
    return real(src, dst, *args, **kwargs)

os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


def _revised(data: dict) -> dict:
    """`data` as a resubmission with other hyperparameters leaves it: a new config hash, so a new file name."""
    data = json.loads(json.dumps(data))
    data["hparams"]["lr"] = 0.0123
    data["config_hash"] = hashlib.sha256(f"revised {data['config_hash']}".encode()).hexdigest()
    return data


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Run records: the fixture board's (and their files) without their submission block; finetune and esd
    rerun with other hparams, whose records have new names and name files that keep theirs."""
    target = tmp_path / "runs"
    shutil.copytree(RESULTS, target)
    for path in target.rglob("*.json"):
        data = json.loads(path.read_text())
        data.pop("submission", None)
        path.unlink()
        if data["method"] in ("finetune", "esd"):
            data = _revised(data)
            path = path.with_name(f"seed{data['seed']}-{data['config_hash'][:12]}.json")
        path.write_text(json.dumps(data))
    return target


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root`, hidden ones included, by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def hidden(results: Path) -> list[str]:
    return sorted(p.name for p in results.iterdir() if p.name.startswith("."))


def finetune_hashes(results: Path) -> set[str]:
    collection = collect(results)
    assert collection.skipped == []
    return {r.config_hash for r in collection.records if r.method == "finetune" and r.benchmark == "digits"}


def test_a_submission_killed_while_applying_is_finished_by_the_next_leaderboard(runs, board, capsys):
    new = {read_record(p).config_hash for p in runs.rglob(FINETUNE)}
    args = ["submit", "--results-dir", str(runs), "--leaderboard", str(board), "--submitter", "tester",
            "--methods", "finetune"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.run([sys.executable, "-c", KILL_MID_APPLY, str(board / "results"), *args],
                           env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 9, child.stderr
    assert (board / "results" / ".submit-journal.json").is_file()  # killed after the commit point
    assert len(list((board / "results").glob(FINETUNE))) == 6 + 3  # the old records, 3 of the new ones

    assert main(["leaderboard", "--dir", str(board)]) == 0
    err = capsys.readouterr().err
    assert "skipped" not in err.replace("(0 skipped)", ""), err
    assert finetune_hashes(board / "results") == new
    assert all(read_record(p).submission.submitted_by == "tester" for p in (board / "results").rglob(FINETUNE))
    assert hidden(board / "results") == []
    assert "finetune" in (board / "leaderboard.csv").read_text()


@pytest.mark.parametrize("failing_fsync", [4, 7], ids=["fourth-record", "journal"])  # 6 records, then the journal
def test_a_disk_that_fills_up_before_the_commit_point_leaves_the_board_as_it_was(
    runs, board, capsys, monkeypatch, failing_fsync
):
    before = snapshot(board)
    real, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == failing_fsync:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code = main(["submit", "--results-dir", str(runs), "--leaderboard", str(board), "--submitter", "tester",
                 "--methods", "finetune"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and err.count("\n") == 1, err
    assert snapshot(board) == before


def _resubmission(results: Path) -> list[tuple[str, dict, str]]:
    """finetune's records on the board as a resubmission with other hparams: (new path, record, old path)."""
    out = []
    for old in sorted(results.rglob(FINETUNE)):
        data = _revised(json.loads(old.read_text()))
        new = old.with_name(f"seed{data['seed']}-{data['config_hash'][:12]}.json")
        out.append((new.relative_to(results).as_posix(), data, old.relative_to(results).as_posix()))
    return out


def _resubmit(results: Path, staged: threading.Event, release: threading.Event) -> None:
    """Replace finetune's records in one transaction, committing only once `release` is set."""
    from unlearn.transaction import board_lock, transaction

    with board_lock(results), transaction(results) as tx:
        for new, data, old in _resubmission(results):
            target = tx.stage(new)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(data))
            tx.remove(old)
        staged.set()
        release.wait(5)


def test_a_reader_waits_for_a_submission_in_progress_and_sees_all_of_it(board):
    results = board / "results"
    new = {data["config_hash"] for _, data, _ in _resubmission(results)}
    staged, release, done, seen = threading.Event(), threading.Event(), threading.Event(), []
    writer = threading.Thread(target=_resubmit, args=(results, staged, release))
    writer.start()
    assert staged.wait(5)
    reader = threading.Thread(target=lambda: (seen.append(finetune_hashes(results)), done.set()))
    reader.start()
    try:
        assert not done.wait(0.5), "the reader did not wait for the submission's lock"
    finally:
        release.set()
        writer.join(5)
    assert done.wait(5)
    assert seen == [new]


def _leave_a_journal(results: Path) -> set[str]:
    """The board as a kill after the commit point leaves it: finetune's new records staged, two already moved."""
    plan: dict = {"staging": STAGING, "add": [], "remove": []}
    hashes = set()
    for i, (new, data, old) in enumerate(_resubmission(results)):
        target = results / new if i < 2 else results / STAGING / new
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data))
        plan["add"].append(new)
        plan["remove"].append(old)
        hashes.add(data["config_hash"])
    (results / ".submit-journal.json").write_text(json.dumps(plan))
    (results / ".staging-ffffffffffffffff" / "digits").mkdir(parents=True)  # an older transaction's garbage
    return hashes


@pytest.mark.parametrize("command", ["leaderboard", "leaderboard --check", "submit"])
def test_a_journal_left_by_a_kill_is_rolled_forward_by_the_next_command(runs, board, capsys, command):
    results = board / "results"
    new = _leave_a_journal(results)
    if command == "submit":
        code = main(["submit", "--results-dir", str(runs), "--leaderboard", str(board), "--submitter", "tester",
                     "--methods", "grad-ascent"])
        assert code == 0, capsys.readouterr().err
        moved = (results / "digits").rglob("grad-ascent/*.json")
        assert all(read_record(p).submission.submitted_by == "tester" for p in moved)
    else:
        main([*command.split(), "--dir", str(board)])
    assert hidden(results) == []
    assert finetune_hashes(results) == new


def test_a_resubmission_keeps_the_files_its_records_name_when_the_old_records_named_the_same(runs, board, capsys):
    results = board / "results"
    old = {p.name for p in results.rglob("esd/*.json")}
    code = main(["submit", "--benchmark", "digits-ddpm", "--results-dir", str(runs), "--leaderboard", str(board),
                 "--submitter", "tester", "--methods", "esd"])
    assert code == 0, capsys.readouterr().err
    records = {p: read_record(p) for p in results.rglob("esd/*.json")}
    assert len(records) == 3 and not old & {p.name for p in records}
    for path, record in records.items():
        assert (path.parent / record.artifacts["samples"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert hidden(results) == []


def test_hidden_files_are_never_read_as_records(board):
    results = board / "results"
    pristine = collect(results).paths
    record = sorted(results.rglob(FINETUNE))[0]
    garbage, backup = results / ".staging-00000000000000aa" / record.relative_to(results), record.parent / ".backup"
    for copy in (garbage, backup / record.name):
        copy.parent.mkdir(parents=True)
        shutil.copy(record, copy)
    collection = collect(results)
    assert collection.skipped == [] and collection.paths == pristine
    assert hidden(results) == []  # a staging directory without a journal is garbage, and is deleted
    assert (backup / record.name).is_file()  # other hidden files are left alone


def test_a_journal_naming_a_path_outside_the_board_is_refused_in_one_line(board, capsys):
    results = board / "results"
    outside = board / "outside.json"
    outside.write_text("{}")
    plan = {"staging": STAGING, "add": [], "remove": ["../outside.json"]}
    (results / ".submit-journal.json").write_text(json.dumps(plan))
    assert main(["leaderboard", "--dir", str(board)]) == 2
    err = capsys.readouterr().err
    assert "submit-journal.json is not a journal" in err and err.count("\n") == 1, err
    assert outside.is_file()
