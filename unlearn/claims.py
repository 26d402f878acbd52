"""Which run computes a cell: the cell's lock, and whether a record at the cell's path is the cell's own.

Runs may share a workdir: two `unlearn run`s of one grid, and the workers of each. A cell runs under an exclusive
lock next to its record (`unlearn.locks`), held from before its method starts until its record is written, and is
checked again under it, so a record another run wrote meanwhile is reused instead of computed twice. A record at a
cell's path counts only when it is the cell's: its config hashes to its `config_hash`, and that hash, the benchmark,
method, forget set and seed are the cell's (a record copied or edited by hand is not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearn.hashing import stable_hash
from unlearn.locks import file_lock, lock_path_for
from unlearn.results import ResultRecord, write_record

if TYPE_CHECKING:
    from unlearn.harness.cells import Cell, CellGroup
    from unlearn.harness.grid import Grid
    from unlearn.harness.protocols import Protocol


def not_this_cells(record: ResultRecord, cell: Cell) -> str | None:
    """Why `record`, read at `cell.path`, is not the cell's result (copied or edited by hand), or None if it is."""
    if stable_hash(record.config) != record.config_hash:
        return f"warning: {cell.path} holds a config that does not hash to its config_hash {record.config_hash[:12]}"
    if (record.config_hash, record.benchmark, record.method, record.forget.spec, record.seed) != (
            cell.config_hash, cell.config["benchmark"], cell.method.name, cell.forget.text, cell.seed):
        return (f"warning: {cell.path} holds {record.method} {record.forget.spec} seed {record.seed} "
                f"(config {record.config_hash[:12]}), not this cell")
    return None


def claim(grid: Grid, protocol: Protocol, group: CellGroup, cell: Cell, wait: bool) -> tuple[ResultRecord, bool] | None:
    """Under the cell's lock, (record, reused): the record another run wrote if it counts as finished
    (`Grid.finished`), else the cell run here and its record written. None when another run holds the lock and
    `wait` is off."""
    with file_lock(lock_path_for(cell.path), wait=wait) as held:
        if not held:
            return None
        record = grid.finished(cell, quiet=True)  # written since this run listed the cell, or while it waited
        if record is not None:
            return record, True
        record = grid.execute(protocol, cell, group)
        write_record(cell.path, record)
    return record, False
