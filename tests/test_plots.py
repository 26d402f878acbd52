"""Leaderboard plots: one (colour, marker) per method, legends outside the axes, intervals inside what a metric can
take, gap bars sorted best first at a size a browser shows unscaled, and the same bytes from the same records."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from page_board import DIGITS_METHODS, make_board

from unlearn.leaderboard.plots import (
    PERCENT,
    clipped,
    gap_bars,
    gap_figure,
    method_styles,
    palette,
    tradeoff,
    tradeoff_figure,
)
from unlearn.leaderboard.stats import Stat
from unlearn.leaderboard.store import collect
from unlearn.leaderboard.tables import summarize

CONTENT_PX = 1068
"""The page's content column: 1100 px wide less its padding; a figure up to this wide is shown unscaled."""


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory):
    root = make_board(tmp_path_factory.mktemp("board"))
    return summarize(collect(root / "results").records)


def test_every_method_of_a_board_has_its_own_colour_and_marker_whatever_the_order():
    names = [f"method-{i:02d}" for i in range(40)]
    styles = method_styles(reversed(names))
    assert styles == method_styles(names)  # assigned in name order, not in the order given
    pairs = [styles[n] for n in names]
    assert len(set(pairs)) == len(names)
    assert len({colour for colour, _ in pairs[:20]}) == 20 == len(set(palette()))  # no colour repeats in 20
    assert len({marker for _, marker in pairs[:7]}) == 7


def test_intervals_are_clipped_to_the_range_of_the_metric():
    wide = Stat(mean=95.0, std=None, n=3, half=30.0)
    assert clipped(wide, *PERCENT) == (30.0, 5.0)
    assert clipped(Stat(mean=4.0, std=None, n=3, half=10.0), low=0.0) == (4.0, 10.0)
    assert clipped(Stat(mean=4.0, std=None, n=1)) == (0.0, 0.0)


def test_tradeoff_puts_the_legend_under_the_axes_and_every_bar_within_0_100(tables):
    table = next(t for t in tables if t.benchmark == "digits")
    fig = tradeoff_figure(table)
    fig.draw_without_rendering()  # the constrained layout places the legend
    axes = fig.get_axes()
    (legend,) = fig.legends
    assert all(ax.get_legend() is None for ax in axes)
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in axes)  # no point can hide under it
    labels = [t.get_text() for t in legend.get_texts()]
    assert set(DIGITS_METHODS) <= set(labels) and len(labels) == len(set(labels))
    ends = np.concatenate([np.concatenate(c.get_segments()) for ax in axes for c in ax.collections
                           if isinstance(c, LineCollection)])  # the error bars
    wide = [r for r in table.methods if r.stats["UA"].ci_high > 100 or r.stats["UA"].ci_low < 0]
    assert wide  # the board has intervals that run past the range: they are drawn clipped
    assert ends.min() >= PERCENT[0] and ends.max() <= PERCENT[1]
    assert fig.get_figwidth() * fig.dpi <= CONTENT_PX


def test_gap_bars_are_sorted_best_first_and_fit_the_page(tables):
    digits = [t for t in tables if t.benchmark == "digits"]
    fig = gap_figure("digits", digits)
    (ax,) = fig.get_axes()
    shown = [t.get_text() for t in ax.get_yticklabels()]
    (table,) = digits
    means = {r.method: r.stats["Robust Gap"].mean for r in table.methods}
    assert shown == sorted(means, key=lambda m: (means[m], m))  # top to bottom (the y axis is inverted)
    assert ax.yaxis_inverted()
    assert fig.get_figwidth() * fig.dpi <= CONTENT_PX


def test_the_same_tables_give_the_same_bytes(tables):
    ddpm = [t for t in tables if t.benchmark == "digits-ddpm"]
    assert tradeoff(ddpm[0]) == tradeoff(ddpm[0])
    assert gap_bars("digits-ddpm", ddpm) == gap_bars("digits-ddpm", ddpm)
