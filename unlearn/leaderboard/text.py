"""The terminal's rendering of the summary tables (`unlearn run`, `unlearn leaderboard`'s preview): one block per table,
a caption, the rows and the notes under them."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from unlearn.leaderboard.stats import ALPHA
from unlearn.leaderboard.tables import LIKE_ORIGINAL, Table


def caption(table: Table) -> str:
    """The one-line caption of a table in the terminal."""
    units = " (UA = 100 − forget accuracy, %)" if "UA" in table.columns else ""
    return f"{table.benchmark} · forget {table.forget} · mean ± 95 % CI half-width over seeds{units}"


def format_text(tables: Sequence[Table]) -> str:
    """Plain-text rendering for the terminal, each table under a one-line caption and over its notes."""
    blocks = []
    for table in tables:
        ranked = table.headline is not None
        frame = pd.DataFrame(
            [{**({"rank": "—" if r.rank is None else str(r.rank)} if ranked else {}), "method": r.method,
              **{c: r.text(c) for c in table.columns}, "ok": r.seeds,
              **({"vs original": r.verdict} if ranked else {})}
             for r in table.rows]
        )
        notes = table.notes()
        if ranked:
            notes.append(f"rank 1: not significantly different from the best on {table.headline} (paired t test "
                         f"over seeds, Holm, α = {ALPHA:g}); {LIKE_ORIGINAL}: not significantly different from the "
                         "original model (doing nothing)")
        blocks.append("\n".join([caption(table), frame.to_string(index=False), *notes]))
    return "\n\n".join(blocks)
