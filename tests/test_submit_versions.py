"""`unlearn submit` warns about records made with other package versions than the board's, and refuses them with
--strict; every record here is built in tmp_path (none of the repository's leaderboard is read)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import files_under

from unlearn.cli import main
from unlearn.results import ForgetInfo, ResultRecord, record_path, write_record
from unlearn.spec import read_spec

SPEC = """\
name: tiny-board
description: a two-cell benchmark for submission tests
dataset: digits
model: mlp
train: {epochs: 1, batch_size: 8, lr: 0.1}
metrics: [accuracy]
gap_metrics: [UA, TA]
grid: {methods: [retrain, finetune], forget: ["class:3"], seeds: [0, 1]}
"""
BOARD_VERSIONS = {"unlearn": "0.1.0", "torch": "2.15.0", "numpy": "2.4.6"}


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-board.yaml"
    path.write_text(SPEC)
    return path


def record(spec_file: Path, method: str, seed: int, packages: dict[str, str]) -> ResultRecord:
    """A finished record of one cell of the tiny benchmark, made with `packages`."""
    spec = read_spec(spec_file)
    config = {"benchmark": spec.name, "benchmark_model": spec.model_key(), "metrics": list(spec.metrics),
              "gap_metrics": list(spec.gap_metrics), "method": method, "seed": seed, "forget": "class:3"}
    metrics = {"UA": 1.0, "TA": 90.0}
    return ResultRecord(
        status="ok", benchmark=spec.name, method=method, method_origin="builtin", hparams={}, track="full",
        forget=ForgetInfo(spec="class:3", sha256="a" * 64, size=10, forgotten_classes=[3]), seed=seed,
        config=config, config_hash=hashlib.sha256(repr(config).encode()).hexdigest(),
        metrics=metrics, oracle_metrics=metrics, original_metrics=metrics, gaps={"UA": 0.0, "TA": 0.0, "Avg. Gap": 0.0},
        run_time_s=1.0, models={"original": "o" * 64, "oracle": "r" * 64},
        env={"python": "3.12.1", "platform": "Linux", "packages": packages, "git_commit": None, "git_dirty": None,
             "device": "cpu", "torch_threads": 1},
    )


def write(root: Path, records: list[ResultRecord]) -> None:
    for r in records:
        write_record(record_path(root, r.benchmark, r.method, r.forget.spec, r.seed, r.config_hash), r)


def setup(tmp_path: Path, spec_file: Path, packages: dict[str, str]) -> tuple[Path, Path]:
    """A board holding retrain records made with BOARD_VERSIONS, and runs of finetune made with `packages`."""
    board, runs = tmp_path / "leaderboard", tmp_path / "runs"
    write(board / "results", [record(spec_file, "retrain", s, BOARD_VERSIONS) for s in (0, 1)])
    write(runs, [record(spec_file, "finetune", s, packages) for s in (0, 1)])
    return board, runs


def submit(capsys, spec_file: Path, runs: Path, board: Path, *extra: str) -> tuple[int, str]:
    code = main(["submit", "--benchmark", str(spec_file), "--methods", "finetune", "--results-dir", str(runs),
                 "--leaderboard", str(board), "--submitter", "tester", *extra])
    return code, capsys.readouterr().err


def test_other_versions_are_submitted_with_a_warning_naming_each_difference(tmp_path, spec_file, capsys):
    board, runs = setup(tmp_path, spec_file, {**BOARD_VERSIONS, "torch": "2.14.1"})
    code, err = submit(capsys, spec_file, runs, board)
    assert code == 0, err
    warning = [line for line in err.splitlines() if line.startswith("unlearn: warning:")]
    assert len(warning) == 1 and "torch 2.14.1 (submitted) vs 2.15.0 (board)" in warning[0], err
    assert "numpy" not in warning[0] and "unlearn 0" not in warning[0]
    assert len(list((board / "results").rglob("finetune/*.json"))) == 2


def test_strict_refuses_other_versions_and_writes_nothing(tmp_path, spec_file, capsys):
    board, runs = setup(tmp_path, spec_file, {**BOARD_VERSIONS, "torch": "2.14.1", "numpy": "2.3.0"})
    before = {p: p.read_bytes() for p in files_under(board)}
    code, err = submit(capsys, spec_file, runs, board, "--strict")
    assert code == 2 and err.count("\n") == 1, err
    assert "numpy 2.3.0 (submitted) vs 2.4.6 (board)" in err and "torch 2.14.1 (submitted) vs 2.15.0 (board)" in err
    assert {p: p.read_bytes() for p in files_under(board)} == before


def test_the_board_s_versions_pass_strict_without_a_warning(tmp_path, spec_file, capsys):
    board, runs = setup(tmp_path, spec_file, dict(BOARD_VERSIONS))
    code, err = submit(capsys, spec_file, runs, board, "--strict")
    assert code == 0 and "warning" not in err, err
    assert len(list((board / "results").rglob("finetune/*.json"))) == 2
