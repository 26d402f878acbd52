"""Leaderboard figures as PNG bytes: efficacy-vs-specificity trade-offs and gap bars (Robust Gap or Avg. Gap).

Figures are drawn on matplotlib's Agg canvas without pyplot (no global state, no
display needed) and saved without the 'Software' metadata entry, so the same tables
give the same bytes with the same matplotlib build. Each method keeps one (colour,
marker) pair in every figure of a board (`method_styles`), legends sit outside the
axes, and intervals are clipped to the range their metric can take. matplotlib is imported
only when a figure is drawn: `unlearn leaderboard --check` asks which figures exist (`tradeoff_pairs`,
`gap_panels`) without drawing any.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from unlearn.leaderboard.stats import Stat
from unlearn.leaderboard.tables import HEADLINES, Table
from unlearn.names import control_free

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TRADEOFF_AXES = (("UA", "TA"), ("MIA-Efficacy", "RA"), ("UA", "Acc-r"))
"""(efficacy, specificity) pairs drawn when a table has both columns; the last is the generation track's
(UA and the judge's accuracy on the remaining classes). Every one of these metrics is a percentage."""
PERCENT = (0.0, 100.0)
"""The range of the trade-off axes' metrics: their intervals are clipped to it."""
REFERENCE_STYLE = {"oracle": dict(marker="*", s=220, color="black"), "original": dict(marker="X", s=90, color="0.55")}
MARKERS = ("o", "s", "^", "D", "v", "P", "h")
"""Method markers; their number (7) is coprime with the palette's (20), so the first 140 methods of a board get
distinct (colour, marker) pairs."""
PANEL_WIDTH = 5.2
"""Inches (100 px each) per panel; two panels make a 1040 px figure, narrower than the page's content column."""
GAP_COLUMNS = 2
"""Gap-bar panels (one per forget set) per row."""


def plain(label: object) -> str:
    """A name as literal text for matplotlib: `$` escaped so that no math text is parsed (a method named
    `$\\undefinedmacro{x}$` would make the parser raise), control characters written as escapes, and length
    bounded."""
    raw = control_free(str(label))
    raw = raw if len(raw) <= 80 else raw[:79] + "…"
    return raw.replace("$", r"\$")


def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes, rendered without a display and without the 'Software' metadata entry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def palette() -> list[tuple[float, float, float]]:
    """tab20's 20 colours, the ten dark ones first: no colour repeats among the first 20 methods."""
    from matplotlib import colormaps

    colours = list(colormaps["tab20"].colors)
    return colours[0::2] + colours[1::2]


def method_styles(methods: Iterable[str]) -> dict[str, tuple[tuple[float, float, float], str]]:
    """(colour, marker) per method, assigned in name order so that a method keeps its style in every figure of
    a board and from one build to the next while the set of methods does not change."""
    colours = palette()
    return {m: (colours[i % len(colours)], MARKERS[i % len(MARKERS)]) for i, m in enumerate(sorted(set(methods)))}


def clipped(stat: Stat, low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    """The (below, above) lengths of `stat`'s 95 % interval around its mean, cut at [low, high] (0, 0 without
    an interval)."""
    if stat.mean is None or stat.half is None:
        return 0.0, 0.0
    return max(0.0, stat.mean - max(low, stat.ci_low)), max(0.0, min(high, stat.ci_high) - stat.mean)


def _legend_below(fig: Figure, axes: Sequence, columns: int) -> None:
    """One legend for the whole figure, under its panels, with each label once."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=columns, fontsize=8,
                   frameon=False)


def tradeoff(table: Table, styles: Mapping[str, tuple] | None = None) -> bytes | None:
    """`tradeoff_figure` as PNG bytes (None without a pair of columns)."""
    fig = tradeoff_figure(table, styles)
    return None if fig is None else png_bytes(fig)


def tradeoff_pairs(table: Table) -> list[tuple[str, str]]:
    """The (efficacy, specificity) panels `table` has both columns of: its trade-off figure exists when any."""
    return [(x, y) for x, y in TRADEOFF_AXES if x in table.columns and y in table.columns]


def gap_panels(tables: Sequence[Table]) -> dict[str, list]:
    """Forget set -> the method rows with a finished `bar_column` mean: the gap figure exists when any has rows."""
    column = bar_column(tables)
    if column is None:
        return {}
    return {t.forget: [r for r in t.methods if r.stats[column].mean is not None] for t in tables}


def tradeoff_figure(table: Table, styles: Mapping[str, tuple] | None = None) -> Figure | None:
    """One panel per (efficacy, specificity) pair: each method's mean with its 95 % CI over seeds (clipped to
    0–100), the oracle as a star, the original model as a cross; the legend under the panels.

    The closer a method sits to the star, the closer it behaves to retraining. None
    when the table has none of the pairs. `styles`: the board's `method_styles`.
    """
    pairs = tradeoff_pairs(table)
    if not pairs:
        return None
    from matplotlib.figure import Figure

    styles = styles if styles is not None else method_styles(r.method for r in table.methods)
    fig = Figure(figsize=(PANEL_WIDTH * len(pairs), 5.4), layout="constrained")
    axes = []
    for i, (x, y) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), i + 1)
        axes.append(ax)
        for row in table.rows:
            sx, sy = row.stats[x], row.stats[y]
            if sx.mean is None or sy.mean is None:
                continue
            if row.role in REFERENCE_STYLE:
                label = plain(f"{row.method} (oracle)" if row.role == "oracle" else row.method)
                ax.scatter([sx.mean], [sy.mean], label=label, zorder=3, **REFERENCE_STYLE[row.role])
            elif row.role == "method":
                colour, marker = styles[row.method]
                xerr = [[v] for v in clipped(sx, *PERCENT)]
                yerr = [[v] for v in clipped(sy, *PERCENT)]
                ax.errorbar([sx.mean], [sy.mean], xerr=xerr, yerr=yerr, fmt=marker, color=colour, markersize=7,
                            markeredgecolor="black", markeredgewidth=0.5, capsize=3, label=plain(row.method),
                            zorder=2)
        ax.set_xlabel(plain(f"{x} (efficacy, %)"))
        ax.set_ylabel(plain(f"{y} (specificity, %)"))
        ax.grid(alpha=0.3)
    _legend_below(fig, axes, columns=max(2, round(PANEL_WIDTH * len(pairs) / 1.75)))
    join = ": " if len(pairs) > 1 else "\n"  # one panel is too narrow for the title on one line
    fig.suptitle(plain(f"{table.benchmark} · forget {table.forget}") + join + "closer to the oracle (★) is better")
    return fig


def bar_column(tables: Sequence[Table]) -> str | None:
    """The column the gap bars of a benchmark's tables show: the first headline (Robust Gap, Avg. Gap) they all have."""
    return next((c for c in HEADLINES if tables and all(c in t.columns for t in tables)), None)


def gap_bars(benchmark: str, tables: Sequence[Table], styles: Mapping[str, tuple] | None = None) -> bytes | None:
    """`gap_figure` as PNG bytes (None when there is nothing to draw)."""
    fig = gap_figure(benchmark, tables, styles)
    return None if fig is None else png_bytes(fig)


def gap_figure(benchmark: str, tables: Sequence[Table], styles: Mapping[str, tuple] | None = None) -> Figure | None:
    """The tables' headline gap to the oracle (`bar_column`) per method: one panel of horizontal bars per forget
    set, best (lowest mean) on top, each bar with its 95 % CI over seeds (never below 0; cut at the axis, which
    ends at 1.5 × the largest mean) and its value written out. Methods without a finished seed in a table have no
    bar there."""
    column, rows = bar_column(tables), gap_panels(tables)
    if not any(rows.values()):
        return None
    from matplotlib.figure import Figure

    styles = styles if styles is not None else method_styles(r.method for t in tables for r in t.methods)
    shown = [t for t in tables if rows[t.forget]]
    ncols = min(GAP_COLUMNS, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    height = max(len(rows[t.forget]) for t in shown) * 0.27 + 1.1
    fig = Figure(figsize=(PANEL_WIDTH * ncols, height * nrows + 0.4), layout="constrained")
    for i, table in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ordered = sorted(rows[table.forget], key=lambda r: (r.stats[column].mean, r.method))
        stats = [r.stats[column] for r in ordered]
        errors = [clipped(s, low=0.0) for s in stats]
        positions = range(len(ordered))
        ax.barh(positions, [s.mean for s in stats], xerr=[[e[0] for e in errors], [e[1] for e in errors]],
                color=[styles[r.method][0] for r in ordered], capsize=2, error_kw=dict(elinewidth=0.8))
        ax.set_yticks(positions, [plain(r.method) for r in ordered], fontsize=8)
        ax.invert_yaxis()  # best on top
        right = max(s.mean for s in stats) * 1.5 or 1.0  # an interval running past it is cut at the edge
        for k, s in enumerate(stats):
            ax.text(s.mean + right * 0.02, k, s.text(), va="center", fontsize=7,
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=0.5))
        ax.set_xlim(0, right)
        ax.set_xlabel(plain(f"{column} to the oracle (lower is better)"), fontsize=9)
        ax.set_title(plain(f"forget {table.forget}"), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    join = ", " if ncols > 1 else "\n"
    fig.suptitle(plain(f"{benchmark}: {column} per method") + join + "mean ± 95 % CI over seeds, best on top")
    return fig
