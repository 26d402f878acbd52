"""Leaderboard figures as PNG bytes: efficacy-vs-specificity trade-offs and gap bars (Robust Gap or Avg. Gap).

Figures are drawn on matplotlib's Agg canvas without pyplot (no global state, no
display needed) and saved without the 'Software' metadata entry, so the same tables
give the same bytes with the same matplotlib build.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from unlearn.leaderboard.tables import HEADLINES, Table
from unlearn.names import control_free

TRADEOFF_AXES = (("UA", "TA"), ("MIA-Efficacy", "RA"), ("UA", "Acc-r"))
"""(efficacy, specificity) pairs drawn when a table has both columns; the last is the generation track's
(UA and the judge's accuracy on the remaining classes)."""
STYLE = {"oracle": dict(marker="*", s=220, color="black"), "original": dict(marker="X", s=90, color="0.55")}


def plain(label: object) -> str:
    """A name as literal text for matplotlib: `$` escaped so that no math text is parsed (a method named
    `$\\undefinedmacro{x}$` would make the parser raise), control characters written as escapes, and length
    bounded."""
    raw = control_free(str(label))
    raw = raw if len(raw) <= 80 else raw[:79] + "…"
    return raw.replace("$", r"\$")


def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes, rendered without a display and without the 'Software' metadata entry."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def tradeoff(table: Table) -> bytes | None:
    """One panel per (efficacy, specificity) pair: each method's mean with its 95 % CI over seeds, the oracle as a star.

    The closer a method sits to the star, the closer it behaves to retraining. None
    when the table has none of the pairs.
    """
    pairs = [(x, y) for x, y in TRADEOFF_AXES if x in table.columns and y in table.columns]
    if not pairs:
        return None
    fig = Figure(figsize=(5.2 * len(pairs), 4.4), layout="constrained")
    methods = [r for r in table.rows if r.role == "method"]
    colors = {r.method: f"C{i % 10}" for i, r in enumerate(methods)}
    for i, (x, y) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), i + 1)
        for row in table.rows:
            sx, sy = row.stats[x], row.stats[y]
            if sx.mean is None or sy.mean is None:
                continue
            if row.role in STYLE:
                label = plain(f"{row.method} (oracle)" if row.role == "oracle" else row.method)
                ax.scatter([sx.mean], [sy.mean], label=label, zorder=3, **STYLE[row.role])
            else:
                ax.errorbar([sx.mean], [sy.mean], xerr=[sx.half or 0.0], yerr=[sy.half or 0.0], fmt="o",
                            color=colors[row.method], capsize=3, label=plain(row.method), zorder=2)
        ax.set_xlabel(plain(f"{x} (efficacy)"))
        ax.set_ylabel(plain(f"{y} (specificity)"))
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(plain(f"{table.benchmark} · forget {table.forget}") + ": closer to the oracle (★) is better")
    return png_bytes(fig)


def bar_column(tables: Sequence[Table]) -> str | None:
    """The column the gap bars of a benchmark's tables show: the first headline (Robust Gap, Avg. Gap) they all have."""
    return next((c for c in HEADLINES if tables and all(c in t.columns for t in tables)), None)


def gap_bars(benchmark: str, tables: Sequence[Table]) -> bytes | None:
    """The tables' headline gap to the oracle (`bar_column`; mean and 95 % CI over seeds) per method, one bar per
    forget set."""
    column = bar_column(tables)
    methods = list(dict.fromkeys(r.method for t in tables for r in t.rows if r.role == "method"))
    if column is None or not methods:
        return None
    fig = Figure(figsize=(max(5.0, 1.1 * len(methods) + 2), 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(tables)
    for j, table in enumerate(tables):
        means, halves = [], []
        for method in methods:
            stat = next((r.stats[column] for r in table.rows if r.method == method), None)
            means.append(stat.mean if stat is not None and stat.mean is not None else 0.0)
            halves.append(stat.half if stat is not None and stat.half is not None else 0.0)
        positions = [k + (j - (len(tables) - 1) / 2) * width for k in range(len(methods))]
        ax.bar(positions, means, width, yerr=halves, capsize=3, label=plain(f"forget {table.forget}"), color=f"C{j % 10}")
    ax.set_xticks(range(len(methods)), [plain(m) for m in methods], rotation=20, ha="right")
    ax.set_ylabel(plain(f"{column} to the oracle (lower is better)"))
    ax.set_title(plain(f"{benchmark}: {column} per method"))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)
