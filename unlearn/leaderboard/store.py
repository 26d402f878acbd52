"""Collect result records from a directory tree, refusing the ones that cannot be compared.

Every `*.json` file under the directory, hidden paths aside, is read and schema-validated
under the tree's lock, after finishing an interrupted submission (unlearn.transaction), so
a reader never sees half of one. A file is skipped, with its path and the reason, when it
is not a valid record, when another record claims the same (benchmark, forget set, method,
seed) cell, when one method appears with two hyperparameter configurations in one
benchmark, or when it was scored against a different original model or oracle than the
cell's retrain record.
Nothing is merged silently: a skipped file is reported, never averaged in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from unlearn.hashing import stable_hash
from unlearn.leaderboard.tables import ORACLE
from unlearn.results import InvalidRecord, ResultRecord, read_record
from unlearn.transaction import board_lock, record_files


@dataclass(frozen=True)
class Skipped:
    """A file that was not used, and why."""

    path: str
    reason: str


@dataclass
class Collection:
    """The usable records (sorted by path) and the skipped files, paths relative to the directory's parent."""

    records: list[ResultRecord] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _display(path: Path, root: Path) -> str:
    """`path` relative to the parent of `root`, with forward slashes (stable across machines)."""
    return path.relative_to(root.parent).as_posix()


def collect(results_dir: Path) -> Collection:
    """Read every record under `results_dir`; see the module docstring for what is skipped."""
    results_dir = Path(results_dir)
    found: list[tuple[str, ResultRecord]] = []
    skipped: list[Skipped] = []
    with board_lock(results_dir):
        for path in record_files(results_dir):
            try:
                found.append((_display(path, results_dir), read_record(path)))
            except InvalidRecord as exc:
                reason = str(exc).removeprefix(f"{path}: ")
                skipped.append(Skipped(_display(path, results_dir), reason))

    bad: dict[str, str] = {}

    by_cell: dict[tuple, list[str]] = defaultdict(list)
    for path, r in found:
        by_cell[(r.benchmark, r.forget.spec, r.method, r.seed)].append(path)
    for paths in by_cell.values():
        if len(paths) > 1:
            for p in paths:
                others = ", ".join(o for o in paths if o != p)
                bad[p] = f"duplicate cell: {others} holds the same benchmark, forget set, method and seed"

    configs: dict[tuple, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path, r in found:
        configs[(r.benchmark, r.method)][stable_hash(r.hparams)].append(path)
    for (benchmark, method), variants in configs.items():
        if len(variants) > 1:
            for paths in variants.values():
                for p in paths:
                    bad.setdefault(
                        p, f"{method} has {len(variants)} hyperparameter configurations in benchmark {benchmark}"
                    )

    oracles = {
        (r.benchmark, r.forget.spec, r.seed): r.models
        for path, r in found
        if r.method == ORACLE and path not in bad
    }
    for path, r in found:
        reference = oracles.get((r.benchmark, r.forget.spec, r.seed))
        if reference is not None and r.models != reference:
            bad.setdefault(path, "scored against a different original model or oracle than the cell's retrain record")

    collection = Collection(skipped=skipped)
    for path, r in found:
        if path in bad:
            collection.skipped.append(Skipped(path, bad[path]))
        else:
            collection.records.append(r)
            collection.paths.append(path)
    collection.skipped.sort(key=lambda s: s.path)
    return collection
