"""The two kinds of failure the harness distinguishes: user mistakes and diverging methods."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; the CLI prints it as one line and exits with code 2."""


class Diverged(RuntimeError):
    """A method produced a non-finite loss or non-finite weights; the cell becomes a failed record."""
