"""Where a leaderboard's methods are described: their section in this repository's docs and their paper.

Both come from the method classes (`Method.docs`, `Method.paper`). Only built-in methods and installed plugins
are looked up, never a `module:Name` import path from a record, and a URL or path that is not plainly one is
dropped, so a record or plugin cannot put a script link or markup on the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from unlearn.errors import UserError

SAFE_URL = re.compile(r"https?://[A-Za-z0-9._~/?=&%+:-]+(#[A-Za-z0-9._~-]*)?")
"""An http(s) URL with nothing Markdown or HTML could read as syntax (no parentheses, spaces, quotes, brackets)."""
SAFE_DOC = re.compile(r"[A-Za-z0-9._/-]+\.md(#[a-z0-9_-]+)?")
"""A Markdown file under the repository root, with an optional anchor."""


@dataclass(frozen=True)
class Reference:
    """A method's docs section (relative to the repository root) and paper URL, each None when unknown."""

    docs: str | None
    paper: str | None


def method_references(names: Iterable[str]) -> dict[str, Reference]:
    """The references of the built-in and installed methods among `names` (others are left out)."""
    from unlearn.methods import METHODS

    known = set(METHODS.names())
    out = {}
    for name in dict.fromkeys(names):
        if name not in known:
            continue
        try:
            cls, origin = METHODS.get(name), METHODS.origin(name)
        except UserError:  # an installed plugin that fails to load: no links
            continue
        paper, docs = getattr(cls, "paper", None), getattr(cls, "docs", None)
        out[name] = Reference(
            docs=docs if origin == "builtin" and isinstance(docs, str) and SAFE_DOC.fullmatch(docs) else None,
            paper=paper if isinstance(paper, str) and SAFE_URL.fullmatch(paper) else None,
        )
    return out
