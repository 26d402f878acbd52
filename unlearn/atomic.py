"""Atomic file writes: a result or checkpoint is either complete on disk or absent, never half-written.

A write that fails because of the disk (full, over quota, read-only, no permission, a directory
in the way) raises `StorageError`, one line naming what could not be written, where, why and the
fix, after removing its temporary file. The previous version of the file, if any, is untouched.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from unlearn.errors import StorageError, UserError

_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")
"""How safetensors (Rust) reports an I/O error it met while saving, e.g. 'No space left on device (os error 28)'."""


def _umask() -> int:
    """The process's umask, read without changing it where the OS tells it (Linux: /proc/self/status): setting and
    restoring it would, for that instant, give files other threads create the permissions of a zero umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _errno_of(exc: BaseException) -> int | None:
    """The OS error number behind `exc`: an OSError's, or one a writer library reports only in its message."""
    if isinstance(exc, OSError):
        return exc.errno or 0
    if type(exc).__name__ == "SafetensorError":  # safetensors' save_file wraps I/O errors in its own type
        found = _OS_ERROR_IN_TEXT.search(str(exc))
        return int(found.group(1)) if found else None
    return None


def _fix(code: int, path: Path) -> str:
    """What the user can do about OS error `code` met while writing `path`."""
    directory = path.parent
    if code == errno.EISDIR:
        return f"{path} is a directory in the way; remove or rename it"
    if code == errno.ENOSPC:
        return "free disk space"
    if code == errno.EDQUOT:
        return "free space within your disk quota"
    if code == errno.EROFS:
        return f"{directory} is on a read-only file system; make it writable or write elsewhere"
    if code in (errno.EACCES, errno.EPERM):
        return f"make {directory} writable"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f"remove the file that is in the way of directory {directory}"
    return f"check the disk holding {directory}"


def storage_error(exc: BaseException, path: Path, label: str) -> StorageError | None:
    """The StorageError for `exc`, met while writing `label` at `path`; None if `exc` is not a storage failure."""
    code = _errno_of(exc)
    if code is None:
        return None
    return _storage_error(code, os.strerror(code) if code else str(exc), path, label)


def _storage_error(code: int, reason: str, path: Path, label: str) -> StorageError:
    return StorageError(
        f"cannot write {label} {path}: {reason}; {_fix(code, path)}, then rerun the same command "
        "(finished work is kept, nothing half-written is left)"
    )


def refuse_directory(path: Path, label: str) -> None:
    """Raise StorageError if a directory stands where the file `label` is to be written at `path` (to say so before
    the work that makes the file, not after)."""
    if Path(path).is_dir():
        raise _storage_error(errno.EISDIR, os.strerror(errno.EISDIR), Path(path), label)


def atomic_write(path: Path, write: Callable[[Path], None], label: str = "file") -> None:
    """Call `write(tmp)` on a temporary file next to `path`, fsync it, then rename it over `path`.

    Any exception removes the temporary file. An OS error of the disk (full, read-only, no
    permission) becomes StorageError, one line naming `label` and `path`; other exceptions
    propagate unchanged.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        write(tmp)
        # mkstemp creates 0600, and a writer may replace tmp with its own file (safetensors' save_file does, also
        # 0600): give the file the permissions an ordinary open() would, 0666 less the umask.
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        left = _remove(tmp)
        error = storage_error(exc, path, label) if isinstance(exc, Exception) else None
        if error is None:
            raise
        if left is not None:
            error = StorageError(f"{error} (could not remove the temporary file {left})")
        raise error from None


def _remove(tmp: Path | None) -> Path | None:
    """Remove a temporary file if it exists; return it if it could not be removed."""
    if tmp is None:
        return None
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        return tmp
    return None


def atomic_write_text(path: Path, text: str, label: str = "file") -> None:
    """Atomically replace `path` with `text` (UTF-8); `label` names the file in a StorageError."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), label)


def ensure_writable(path: Path, label: str) -> None:
    """Raise UserError unless `path` is, or could be created as, a writable directory.

    Probes the nearest existing ancestor with an anonymous temporary file, which
    the OS removes at once: nothing is left behind, and the probe is truthful for
    root and on read-only file systems, where permission bits are not.
    """
    probe = Path(path).absolute()
    while not probe.exists():
        probe = probe.parent
    if probe == Path(path).absolute() and not probe.is_dir():
        raise UserError(f"{label} {path} is a file, not a directory; remove or rename it")
    if not probe.is_dir():
        raise UserError(f"{label} {path} cannot be created: {probe} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise UserError(f"{label} {path} is not writable ({exc.strerror})") from None
