"""Replace a set of files in a results tree as one transaction: readers see all of it or none of it.

A transaction stages every new file in a hidden sibling directory of the tree (`.staging-<random>/`, same
relative paths, each file written atomically by its caller). Its commit point is the atomic write of the
journal, `.submit-journal.json`, which names the staging directory, the paths to add and the paths to remove.
Applying it renames each staged file into place, unlinks each removed file (never one that is also added),
then deletes the journal, then the staging directory. Applying is idempotent, so a kill at any point after
the commit point is repaired by rolling forward; a failure before it leaves the tree as it was.

Writers and readers hold the tree's exclusive lock (`.board.lock`, see unlearn.locks) and roll forward a
journal they find first (`board_lock`), so no reader sees half a transaction and two writers do not mix.
A staging directory that no journal names is garbage, deleted under the lock. `record_files` leaves out
every hidden path. Where the lock file cannot be created (a read-only checkout) reading goes on unlocked;
a journal there cannot be applied and is reported as a StorageError.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from unlearn.atomic import atomic_write_text, storage_error
from unlearn.errors import StorageError
from unlearn.locks import file_lock

LOCK = ".board.lock"
JOURNAL = ".submit-journal.json"
STAGING_PREFIX = ".staging-"
_STAGING_NAME = re.compile(re.escape(STAGING_PREFIX) + "[0-9a-f]{16}")


def record_files(root: Path) -> list[Path]:
    """The `*.json` files under `root`, in path order, leaving out hidden paths (journal, staging, others)."""
    root = Path(root)
    found = root.rglob("*.json") if root.is_dir() else []
    visible = [p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(visible, key=lambda p: p.relative_to(root).as_posix())


@contextmanager
def board_lock(root: Path) -> Iterator[None]:
    """Hold the exclusive lock of the tree `root` for the block, after rolling forward an interrupted transaction.

    A tree that does not exist is neither created nor locked: there is nothing in it to read.
    """
    root = Path(root)
    if not root.is_dir():
        yield
        return
    with file_lock(root / LOCK):
        recover(root)
        yield


def recover(root: Path) -> None:
    """Finish the transaction whose journal is in `root`, then delete staging directories no journal names."""
    root, journal = Path(root), Path(root) / JOURNAL
    if journal.exists():
        _apply(root, *_read_journal(journal))
    for leftover in root.glob(STAGING_PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True)  # garbage; where it cannot go, nothing reads it


class Transaction:
    """The files to add to and remove from a results tree, by path relative to it; see `transaction`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.staging = self.root / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
        self.added: list[str] = []
        self.removed: list[str] = []

    def stage(self, relative: str) -> Path:
        """The staging path to write the new file `relative` to (atomically, with the parents it needs)."""
        self.added.append(_checked(relative))
        return self.staging / relative

    def remove(self, relative: str) -> None:
        """Remove `relative` from the tree on commit, unless the transaction also adds it."""
        self.removed.append(_checked(relative))

    def commit(self) -> None:
        """Write the journal (the commit point), then apply it."""
        journal = self.root / JOURNAL
        plan = {"staging": self.staging.name, "add": self.added, "remove": self.removed}
        try:
            atomic_write_text(journal, json.dumps(plan, indent=1) + "\n", "submission journal")
        except BaseException:
            if not journal.exists():
                shutil.rmtree(self.staging, ignore_errors=True)
            raise
        _apply(self.root, self.staging.name, self.added, self.removed)


@contextmanager
def transaction(root: Path) -> Iterator[Transaction]:
    """Stage files in the block, committed all at once on leaving it; an exception leaves `root` unchanged.

    The caller has created `root` and holds `board_lock(root)`.
    """
    tx = Transaction(root)
    try:
        yield tx
    except BaseException:
        shutil.rmtree(tx.staging, ignore_errors=True)
        raise
    tx.commit()


def _checked(relative: str) -> str:
    """`relative` if it is a plain relative path to a visible file of the tree; ValueError otherwise."""
    parts = PurePosixPath(relative).parts if isinstance(relative, str) else ()
    if not parts or PurePosixPath(relative).is_absolute() or any(p in ("..", "") or p.startswith(".") for p in parts):
        raise ValueError(f"not a visible relative path in a results tree: {relative!r}")
    return relative


def _read_journal(journal: Path) -> tuple[str, list[str], list[str]]:
    """The staging directory's name and the paths to add and remove that `journal` lists."""
    try:
        plan = json.loads(journal.read_text(encoding="utf-8"))
        staging, add, remove = plan["staging"], plan["add"], plan["remove"]
        if not (isinstance(staging, str) and _STAGING_NAME.fullmatch(staging)) or not isinstance(add + remove, list):
            raise ValueError(staging)
        return staging, [_checked(p) for p in add], [_checked(p) for p in remove]
    except (OSError, ValueError, KeyError, TypeError):
        raise StorageError(f"{journal} is not a journal of an interrupted submission that unlearn can finish; "
                           "move it away and submit again") from None


def _apply(root: Path, staging_name: str, add: list[str], remove: list[str]) -> None:
    """Move the staged files into place, remove the replaced ones, then delete the journal and the staging dir."""
    staging = root / staging_name
    path = root
    try:
        for relative in add:
            source, path = staging / relative, root / relative
            if not source.exists():
                if path.exists():
                    continue  # moved by an earlier, interrupted apply
                raise StorageError(f"cannot finish the interrupted submission in {root}: its staged file {source} "
                                   f"is gone; move {root / JOURNAL} away and submit again")
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, path)
        for relative in sorted(set(remove) - set(add)):
            path = root / relative
            path.unlink(missing_ok=True)
        path = root / JOURNAL
        path.unlink()
    except OSError as exc:
        raise (storage_error(exc, path, "leaderboard file") or exc) from None
    shutil.rmtree(staging, ignore_errors=True)
