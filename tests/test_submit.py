"""`unlearn submit`: complete grids with the leaderboard's oracle are copied with provenance; others refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURE_RESULTS as RESULTS
from conftest import files_under

from unlearn.cli import main
from unlearn.results import read_record
from unlearn.spec import load_benchmark


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A results directory as `unlearn run` leaves it: the fixture board's records, without their submission block."""
    target = tmp_path / "runs"
    for path in RESULTS.rglob("*.json"):
        data = json.loads(path.read_text())
        data.pop("submission", None)
        dest = target / path.relative_to(RESULTS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(data))
    return target


def submit(capsys, runs: Path, board: Path, *extra: str) -> tuple[int, str]:
    code = main(["submit", "--results-dir", str(runs), "--leaderboard", str(board), "--submitter", "tester", *extra])
    return code, capsys.readouterr().err


def test_complete_grid_is_copied_with_provenance_and_replaces_earlier_records(capsys, runs, board):
    before = {p.name for p in (board / "results" / "digits").rglob("finetune/*.json")}
    code, err = submit(capsys, runs, board, "--methods", "finetune")
    assert code == 0, err
    assert "copied 6 records of finetune" in err
    records = [read_record(p) for p in (board / "results" / "digits").rglob("finetune/*.json")]
    assert len(records) == 6 and {p.name for p in (board / "results" / "digits").rglob("finetune/*.json")} == before
    for r in records:
        assert r.submission.submitted_by == "tester"
        assert r.submission.source.startswith("digits/") and r.submission.unlearn_version != "not installed"
    others = [read_record(p) for p in (board / "results").rglob("grad-ascent/*.json")]
    assert all(r.submission.submitted_by != "tester" for r in others)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda runs: next((runs / "digits").rglob("finetune/seed2-*.json")).unlink(), "finetune: missing"),
        (lambda runs: _edit(runs, "finetune", lambda d: d.update(status="failed", error="boom", metrics={}, gaps={})),
         "failed (boom)"),
        (lambda runs: _edit(runs, "finetune", lambda d: d["hparams"].update(lr=0.5)),
         "hyperparameters differ between cells"),
        (lambda runs: _edit(runs, "finetune", lambda d: d["models"].update(oracle="f" * 64)),
         "different original model or oracle"),
        (lambda runs: _edit(runs, "finetune", lambda d: d["env"]["packages"].pop("torch")),
         "versions of torch not recorded"),
        (lambda runs: (runs / "digits" / "bad.json").write_text("[]"), "invalid records"),
    ],
    ids=["missing-seed", "failed-cell", "two-configs", "other-oracle", "no-versions", "invalid-file"],
)
def test_bad_submissions_are_refused_in_one_line_and_change_nothing(capsys, runs, board, damage, message):
    damage(runs)
    before = {p: p.read_bytes() for p in files_under(board)}
    code, err = submit(capsys, runs, board, "--methods", "finetune")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in files_under(board)} == before


def test_missing_cells_are_named(capsys, runs, board):
    for path in runs.rglob("finetune/seed1-*.json"):
        path.unlink()
    code, err = submit(capsys, runs, board, "--methods", "finetune")
    assert code == 2 and "finetune: missing random:0.1 seed 1, class:3 seed 1" in err


def test_without_an_oracle_on_the_board_retrain_must_be_submitted_too(capsys, runs, tmp_path):
    empty = tmp_path / "empty-board"
    code, err = submit(capsys, runs, empty, "--methods", "finetune")
    assert code == 2 and "no oracle for class:3 seed 0" in err and "submit `retrain`" in err
    code, err = submit(capsys, runs, empty, "--methods", "retrain,finetune")
    assert code == 0, err
    assert len(files_under(empty / "results")) == 12


def test_failed_cells_can_be_submitted_on_purpose(capsys, runs, board):
    _edit(runs, "finetune", lambda d: d.update(status="failed", error="boom", metrics={}, gaps={}))
    code, err = submit(capsys, runs, board, "--methods", "finetune", "--allow-failed")
    assert code == 0, err
    assert sum(read_record(p).status == "failed" for p in (board / "results" / "digits").rglob("finetune/*.json")) == 1


def test_dry_run_checks_and_writes_nothing(capsys, runs, board):
    before = {p: p.read_bytes() for p in files_under(board)}
    code, err = submit(capsys, runs, board, "--dry-run")
    methods = {p.parent.name for p in (runs / "digits").rglob("*.json")}
    assert len(methods) > 1 and set(load_benchmark("digits").grid.methods) >= methods
    cells = len(list((runs / "digits").rglob("*.json")))  # every complete grid found: all of each method's cells
    assert code == 0 and f"would copy {cells} records" in err
    assert {p: p.read_bytes() for p in files_under(board)} == before


def _edit(runs: Path, method: str, change) -> None:
    """Apply `change` to the JSON of one digits record of `method` (the first in path order): the benchmark these
    tests submit (finetune also has digits-vit records)."""
    path = sorted((runs / "digits").rglob(f"{method}/*.json"))[0]
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
