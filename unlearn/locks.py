"""Advisory file locks between processes that share a directory (flock on a hidden file, removed on release).

A lock file holds no data. Its holder unlinks it before releasing it, so a waiter that then gets the lock
checks that the file it locked is still the one at the path, and otherwise locks the new one. A holder killed
with SIGKILL leaves the empty file behind, unlocked: the next caller takes it over, and `sweep_stale` removes
the ones nobody holds. Without fcntl (not POSIX), or when the lock file cannot be created (a read-only
directory: the write that follows will say so), there is no lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: no locks across processes (writes stay atomic)
    fcntl = None  # type: ignore[assignment]

LOCK_GLOB = ".*.lock"


def lock_path_for(path: Path) -> Path:
    """The hidden lock file that guards `path`: `.NAME.lock` next to it."""
    return path.with_name(f".{path.name}.lock")


@contextmanager
def file_lock(lock_path: Path, *, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Hold the lock at `lock_path` (exclusive, or `shared` with other shared holders) for the block.

    Yields True when held (or when locking is impossible here, see the module doc), False when `wait` is off
    and another process holds it. An exclusive holder removes the file on release.
    """
    fd = _acquire(lock_path, shared, wait) if fcntl is not None else None
    if fd is False:
        yield False
        return
    try:
        yield True
    finally:
        if isinstance(fd, int):
            if not shared:
                with suppress(OSError):
                    lock_path.unlink(missing_ok=True)
            os.close(fd)  # closing releases the flock


def _acquire(lock_path: Path, shared: bool, wait: bool) -> int | bool | None:
    """Open and flock `lock_path`: the locked descriptor; False if busy and not waiting; None if it cannot be
    created."""
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    while True:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # the previous holder removed it after we opened it
            same = False
        if same:
            return fd
        os.close(fd)


def sweep_stale(directory: Path, recursive: bool = True) -> int:
    """Remove the lock files under `directory` that no process holds (left by a holder killed with SIGKILL);
    return how many. A lock held now is left alone."""
    directory = Path(directory)
    if fcntl is None or not directory.is_dir():
        return 0
    removed = 0
    for path in directory.rglob(LOCK_GLOB) if recursive else directory.glob(LOCK_GLOB):
        with file_lock(path, wait=False) as held:
            removed += bool(held)  # held: nobody else had it, and releasing it removes it
    return removed
