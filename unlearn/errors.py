"""The two kinds of failure the harness distinguishes: user mistakes and diverging methods."""

from __future__ import annotations

from pydantic import ValidationError


class UserError(Exception):
    """A mistake in the user's input; the CLI prints it as one line and exits with code 2."""


class Diverged(RuntimeError):
    """A method produced a non-finite loss or non-finite weights; the cell becomes a failed record."""


def validation_problem(exc: ValidationError, default_location: str = "") -> str:
    """The first problem pydantic found, as one line: 'field.path: message'."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or default_location
    return f"{where}: {err['msg']}" if where else err["msg"]
