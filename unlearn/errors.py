"""The kinds of failure the harness distinguishes: user mistakes, a disk that cannot take an output, diverging methods."""

from __future__ import annotations

from pydantic import ValidationError


class UserError(Exception):
    """A mistake in the user's input; the CLI prints it as one line and exits with code 2."""


class StorageError(UserError):
    """An output could not be written (disk full, over quota, read-only, no permission); the run stops with one line.

    Raised by the atomic writers (records, cached models, manifests, sample grids). It is the disk's fault, not a
    method's, so the harness lets it stop the run instead of recording a failed cell.
    """


class Diverged(RuntimeError):
    """A method produced a non-finite loss or non-finite weights; the cell becomes a failed record."""


def validation_problem(exc: ValidationError, default_location: str = "") -> str:
    """The first problem pydantic found, as one line: 'field.path: message'."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or default_location
    message = err["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's ValueError
    return f"{where}: {message}" if where else message
