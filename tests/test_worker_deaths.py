"""A worker that dies while it sets up its group has run no cell: its unit runs again, once; one that dies after
leaving a cell to another run fails the cell it was running; the table counts the original's and the oracle's seeds
only from records that hold their scores; and workers honour --retry-failed when they check a cell's record.

The pool's workers rebuild the test's Grid subclass (pickled by reference to this module), whose group setup ends
its process as a segfault or the OOM killer would.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from test_executors import grid, run

from unlearn.executors import CellDeferred, ProcessExecutor, WorkUnit
from unlearn.executors.worker import _Running
from unlearn.harness import Grid, GroupSummary, Workspace, load_kind, plan_grid
from unlearn.leaderboard import summarize
from unlearn.provenance import environment
from unlearn.results import ForgetInfo, ResultRecord, read_record
from unlearn.spec import load_benchmark


class DiesInGroupSetup(Grid):
    """Logs each group setup to WORKDIR/data/setups; ends its worker (os._exit) in the run's first `deaths` setups,
    each claiming a marker file of its own (created exclusively: workers set groups up at once)."""

    deaths = 1

    def prepare_group(self, forget: Any, manifest: Any, seed: int) -> Any:
        folder = self.workspace.results_dir.parent
        with open(folder / "setups", "a") as fh:
            fh.write(f"{forget.text}\n")
        for i in range(self.deaths):
            try:
                os.close(os.open(folder / f"death-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            os._exit(3)
        return super().prepare_group(forget, manifest, seed)


class DiesInEveryGroupSetup(DiesInGroupSetup):
    """Ends its worker in the first three setups: a unit requeued without end would run on the fourth."""

    deaths = 3


def run_grid(runner_cls: type[Grid], mini: Path, tmp_path: Path, cache: Path, forgets: list[str]) -> Any:
    spec = load_benchmark(str(mini))
    workspace = Workspace.at(tmp_path, cache_dir=cache)
    runner = runner_cls(plan_grid(spec, ["finetune", "random-label"], forgets, [0]), load_kind(
        spec, workspace, torch.device("cpu")), workspace)
    executor = ProcessExecutor(jobs=len(forgets))
    return runner.run(executor), executor, (tmp_path / "data" / "setups").read_text().splitlines()


def test_a_worker_killed_in_its_group_setup_leaves_its_unit_to_a_new_worker(mini, shared_cache, tmp_path):
    result, executor, setups = run_grid(DiesInGroupSetup, mini, tmp_path, shared_cache, ["class:3", "random:0.1"])
    assert [r.status for r in result.records] == ["ok"] * 4 and result.ran == 4
    assert all(r.oracle_metrics and r.original_metrics for r in result.records)
    assert executor.stats.deaths == 1 and "1 worker deaths" in executor.stats.summary()
    assert sorted(Counter(setups).values()) == [1, 2]  # the unit of the dead worker was set up again


def test_a_group_setup_that_kills_every_worker_fails_its_cells_after_two_attempts(mini, shared_cache, tmp_path):
    result, executor, setups = run_grid(DiesInEveryGroupSetup, mini, tmp_path, shared_cache, ["class:3"])
    assert len(setups) == 2 and executor.stats.deaths == 2
    assert [r.status for r in result.records] == ["failed"] * 2
    for record in result.records:
        assert record.error == ("worker process died twice before the cell's group was ready (original model and "
                                "oracle loaded or trained, and scored): exit code 3")
        assert record.oracle_metrics == {} and record.original_metrics == {}
    assert [read_record(p) for p in sorted((tmp_path / "data" / "runs").rglob("*.json"))] == sorted(
        result.records, key=lambda r: r.method)


def test_a_dead_workers_running_cell_is_found_in_the_order_it_ran_them(mini, shared_cache, tmp_path):
    """The worker left the unit's first cell to another run (CellDeferred) and died in the second: the second is the
    failed record, and the first runs again."""
    spec = load_benchmark(str(mini))
    workspace = Workspace.at(tmp_path, cache_dir=shared_cache)
    runner = Grid(plan_grid(spec, ["finetune", "random-label"], ["class:3"], [0]),
                    load_kind(spec, workspace, torch.device("cpu")), workspace)
    forget = runner.plan.forgets[0]
    manifest = runner.models.build_manifest(forget, 0)
    cells = tuple(runner.cell(method, forget, manifest, 0) for method in runner.plan.methods)
    info = GroupSummary(oracle_metrics={"UA": 1.0}, original_metrics={"UA": 0.0})
    running = _Running(WorkUnit(forget, 0, manifest, cells, (0, 1)), info=info)
    executor = ProcessExecutor(jobs=1)
    executor._handle(running, CellDeferred(0))
    failed, again = executor._died(runner, running, "exit code 3")
    assert [(done.position, done.record.method) for done in failed] == [(1, "random-label")]
    assert again is not None and again.positions == (0,) and again.cells == cells[:1]
    assert read_record(cells[1].path).error == "worker process died while running this cell: exit code 3"


def test_the_workers_of_a_retry_failed_run_retry_the_failed_cells(mini, shared_cache, tmp_path, capsys):
    """A worker checks a cell's record again under the cell's lock: with --retry-failed, a failed one is run again."""
    marker = tmp_path / "transient-failure"
    marker.touch()
    flaky = "plugin_methods:FailWhileMarker"
    args = [*grid(mini, tmp_path, shared_cache, flaky), "--hparam", f"{flaky}.marker={marker}"]
    args[args.index("--forget") + 1] = "class:3"
    code, _, err = run(capsys, *args)
    assert code == 0 and "1 cells run, 0 reused, 1 failed" in err, err
    marker.unlink()
    code, _, err = run(capsys, *args, "--retry-failed", "--executor", "process", "--jobs", "1")
    assert code == 0 and "1 cells run, 0 reused, 0 failed" in err, err


def _record(seed: int, ok: bool) -> ResultRecord:
    """finetune's record on class:3 for `seed`: ok with scores, or failed before its group was ready (none)."""
    scores = {"UA": 10.0 + seed, "RA": 99.0}
    return ResultRecord(
        status="ok" if ok else "failed", error=None if ok else "worker process died twice before ...",
        benchmark="digits-mini", method="finetune", method_origin="builtin", hparams={}, track="full",
        forget=ForgetInfo(spec="class:3", sha256="0" * 64, size=1, forgotten_classes=[3]), seed=seed,
        config={"gap_metrics": ["UA", "RA"]}, config_hash=f"{seed:064x}", metrics=scores if ok else {},
        oracle_metrics=scores if ok else {}, original_metrics={"UA": 0.0, "RA": 100.0} if ok else {},
        gaps={"Avg. Gap": 0.0} if ok else {}, run_time_s=1.0 if ok else None, models={},
        env=environment(torch.device("cpu")),
    )


def test_reference_rows_count_the_seeds_whose_records_hold_their_scores():
    [table] = summarize([_record(0, ok=True), _record(1, ok=True), _record(2, ok=False)])
    finetune, original, oracle = table.row("finetune"), table.row("original"), table.row("retrain")
    assert (finetune.ok, finetune.runs) == (2, 3)
    for row in (original, oracle):
        assert (row.ok, row.runs, row.stats["UA"].n) == (2, 2, 2), row
    assert oracle.stats["UA"].mean == 10.5 and original.stats["RA"].mean == 100.0
