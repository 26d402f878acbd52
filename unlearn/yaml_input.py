"""YAML written by users, read safely: whole documents of bounded expanded size, and single scalar values.

`yaml.safe_load` builds an alias bomb ("a: &a [x, x, ...], b: &b [*a, *a, ...], ...") cheaply, with shared
references, but anything that walks the result (an error message formatting it, a hash, a validator) expands
it exponentially. Documents are therefore composed first, and their node graph is counted with aliases
expanded: a document larger than `MAX_NODES` when expanded, or nested deeper than the parser can follow,
is refused in one line before anything is constructed. Command-line values (`--hparam`, tuning grids) are
scalars only: numbers, booleans, null or strings, never a collection, alias or tag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from unlearn.errors import UserError
from unlearn.names import brief

MAX_NODES = 100_000
"""The most nodes a document may hold with its aliases expanded (a benchmark spec has a few hundred)."""


def _compose(text: str, where: str) -> tuple[yaml.SafeLoader, yaml.Node | None]:
    """The loader and the composed node of `text` (None for an empty document); UserError naming `where`."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses non-printable characters at once
        raise UserError(f"{where}: not YAML text ({getattr(exc, 'reason', None) or 'unreadable'})") from None
    try:
        return loader, loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        loader.dispose()
        raise UserError(f"{where}: malformed YAML{line} ({problem})") from None
    except RecursionError:
        loader.dispose()
        raise UserError(f"{where}: YAML nested too deeply") from None


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """How many nodes `node` holds with every alias expanded, counting no further than `limit` + 1."""
    count, stack = 0, [node]
    while stack and count <= limit:
        current = stack.pop()
        count += 1
        if isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.extend((key, value))
    return count


def load_document(text: str, where: str, max_nodes: int = MAX_NODES) -> Any:
    """Parse a YAML document safely (see the module doc); UserError naming `where` when it cannot be read."""
    loader, node = _compose(text, where)
    try:
        if node is None:
            return None
        if _expanded_size(node, max_nodes) > max_nodes:
            raise UserError(f"{where}: YAML document too large once its aliases are expanded (more than "
                            f"{max_nodes} values; an alias bomb?)")
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise UserError(f"{where}: unreadable YAML ({getattr(exc, 'problem', None) or exc})") from None
        except RecursionError:
            raise UserError(f"{where}: YAML nested too deeply") from None
    finally:
        loader.dispose()


SCALARS = (bool, int, float, str, type(None))


def parse_scalar(text: str, where: str) -> Any:
    """A command-line value as YAML reads a plain scalar: a number, boolean, null or string.

    An empty value is the empty string; a value YAML reads as another type (a date) stays the text given; a
    collection, an alias or a tag is refused with one line naming `where`.
    """
    if text == "":
        return ""
    loader, node = _compose(text, where)
    try:
        if not isinstance(node, yaml.ScalarNode) or not node.tag.startswith("tag:yaml.org,2002:"):
            raise UserError(f"{where}: give a single number, boolean, null or string, not {brief(text)}")
        try:
            value = loader.construct_document(node)
        except (yaml.YAMLError, ValueError):
            raise UserError(f"{where}: cannot read the value {brief(text)}") from None
    finally:
        loader.dispose()
    if node.tag.endswith((":binary", ":set", ":omap", ":pairs")) or not isinstance(value, SCALARS):
        return text
    return value


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of the file `path`, a `what` (e.g. "benchmark spec"); one-line UserError when unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a {what} (not UTF-8 text: byte {exc.start})") from None
