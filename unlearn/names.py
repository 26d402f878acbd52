"""Names that become file-path components or leaderboard text, checked against strict patterns.

Benchmark and method names name folders under `data/runs/` and `leaderboard/results/`, and forget specs
name files and folders too; records read from disk carry them back. Every such name is checked here
before a path is built from it or a record is accepted, so a name like `..`, one with a slash, a newline
or 200,000 characters is refused with one line instead of writing outside the results directory or
breaking the leaderboard page. `brief` bounds what an error message echoes of a value.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

from unlearn.errors import UserError

NAME_MAX = 100
"""The longest benchmark or method name (a name is a path component and a table cell)."""

BENCHMARK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
"""A benchmark name: ASCII letters, digits, '.', '_', '+', '-', starting with a letter or digit."""
METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*(:[A-Za-z_][A-Za-z0-9_.]*)?")
"""A method name: like a benchmark name, or a `package.module:Class` import path."""
FORGET_SPEC = re.compile(r"[a-z][a-z0-9-]*(:[A-Za-z0-9._+:=/-]+)?")
"""A forget spec as the parser writes it canonically (`random:0.1`, `continual:3+4/5+6:shots=5`, or a bare kind
that takes no argument, `memorized`)."""
FORGET_MAX = 200
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}")
"""A package or Python version string (PEP 440 and local versions such as 2.15.0+cu128)."""
NOT_INSTALLED = "not installed"
GIT_COMMIT = re.compile(r"[0-9a-f]{7,64}")
DEVICE = re.compile(r"[a-z]{2,16}(:[0-9]{1,4})?")
"""A torch device as recorded (`cpu`, `cuda:0`, `mps`)."""
PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TEXT_MAX = 200
"""The longest one-line text of a record (a method's origin, a check's description)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Control characters, line and paragraph separators and bidirectional overrides: never part of a short text."""

_RULES = {
    BENCHMARK_NAME.pattern: "may hold only ASCII letters, digits and . _ + - (starting with a letter or digit)",
    METHOD_NAME.pattern: "may hold only ASCII letters, digits and . _ + - (starting with a letter or digit), or be "
    "an import path package.module:Class",
    FORGET_SPEC.pattern: "is not a forget spec such as random:0.1 or class:3",
    VERSION.pattern: "is not a version string",
    GIT_COMMIT.pattern: "is not a git commit hash",
    DEVICE.pattern: "is not a device name such as cpu or cuda:0",
    PACKAGE.pattern: "is not a package name",
}
"""What each pattern allows, in words."""

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxtuple, _BRIEF.maxset = 3, 4, 4, 4, 4
_BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 60, 60, 40


def brief(value: Any) -> str:
    """`repr(value)` bounded in size and work, for error messages: nested and self-referencing values (a YAML
    alias bomb) and huge strings are cut with '...' instead of being expanded."""
    try:
        text = _BRIEF.repr(value)
    except Exception:  # a repr that raises: say what it is, not what it holds
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 120 else text[:117] + "..."


def name_problem(value: Any, pattern: re.Pattern[str], limit: int = NAME_MAX) -> str | None:
    """Why `value` is not a name matching `pattern` of at most `limit` characters, or None when it is one."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit} are allowed"
    if not pattern.fullmatch(value):
        return _RULES.get(pattern.pattern, f"does not match {pattern.pattern}")
    return None


def check_method_name(name: Any) -> str:
    """A method name as given on the command line, in a spec or by a plugin; UserError, one line naming the rule,
    if it cannot name a folder."""
    problem = name_problem(name, METHOD_NAME)
    if problem is not None:
        raise UserError(f"method name {brief(name)} {problem}")
    return name


def text_problem(value: str, limit: int = TEXT_MAX) -> str | None:
    """Why `value` is not a one-line text of at most `limit` characters (a submitter's name), or None."""
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit} are allowed"
    if _CONTROL.search(value):
        return "holds a control character (a newline, tab or a bidirectional override)"
    return None


def control_free(value: str) -> str:
    """`value` with each control or bidirectional character written as an escape (\\u000a), for display."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
