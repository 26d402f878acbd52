"""Regenerate the leaderboard directory from its records, or check that it is up to date.

Outputs: README.md (tables in markdown), leaderboard.csv, index.html (self-contained)
and plots/*.png. The same records always give the same bytes: records are read in
path order, tables sort stably, and no output carries a timestamp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from unlearn.atomic import atomic_write
from unlearn.leaderboard import plots as figures
from unlearn.leaderboard.references import method_references
from unlearn.leaderboard.render import csv_text, html_page, markdown_page, plot_name
from unlearn.leaderboard.store import Collection, collect
from unlearn.leaderboard.tables import Table, summarize

PLOTS_DIR = "plots"
_DATA_URI = re.compile(rb"data:image/png;base64,[A-Za-z0-9+/=]+")


@dataclass
class Build:
    """What a regeneration produced: file contents by path relative to the leaderboard directory."""

    outputs: dict[str, bytes]
    collection: Collection


def _descriptions(names: list[str]) -> dict[str, str]:
    """One-line descriptions of the benchmarks among `names` whose spec is found and readable."""
    from unlearn.errors import UserError
    from unlearn.spec import available_benchmarks, read_spec

    found = available_benchmarks()
    out = {}
    for name in names:
        try:
            out[name] = read_spec(found[name]).description
        except (KeyError, UserError):  # a plugin benchmark that is not installed here: no description
            continue
    return out


def board_order(tables: list[Table]) -> list[Table]:
    """The tables with the default benchmark's first, then the other benchmarks' by name (each benchmark's
    tables keep their order)."""
    from unlearn.spec import DEFAULT_BENCHMARK

    return sorted(tables, key=lambda t: (t.benchmark != DEFAULT_BENCHMARK, t.benchmark))


UNDRAWN = b"undrawn"
"""What stands for a plot's PNG when `render` is asked not to draw (`stale_outputs` compares plots by presence
and index.html with its images masked, so neither needs the pixels)."""


def render(leaderboard_dir: Path, results_dir: Path | None = None, draw: bool = True) -> Build:
    """Compute every output in memory from the records under `results_dir` (default: LEADERBOARD/results); with
    `draw` False every plot's bytes are UNDRAWN (the same plots exist, none is drawn)."""
    leaderboard_dir = Path(leaderboard_dir)
    results_dir = Path(results_dir) if results_dir is not None else leaderboard_dir / "results"
    collection = collect(results_dir)
    tables = board_order(summarize(collection.records))
    styles = figures.method_styles(r.method for t in tables for r in t.methods) if draw else {}
    plots: dict[str, bytes] = {}
    for table in tables:
        if figures.tradeoff_pairs(table):
            plots[plot_name(table.benchmark, table.forget)] = figures.tradeoff(table, styles) if draw else UNDRAWN
    for benchmark in dict.fromkeys(t.benchmark for t in tables):
        own = [t for t in tables if t.benchmark == benchmark]
        if any(figures.gap_panels(own).values()):
            plots[plot_name(benchmark)] = figures.gap_bars(benchmark, own, styles) if draw else UNDRAWN
    try:
        label = results_dir.resolve().relative_to(leaderboard_dir.resolve()).as_posix() + "/"
    except ValueError:
        label = results_dir.as_posix()
    benchmarks = list(dict.fromkeys(t.benchmark for t in tables))
    refs = method_references(r.method for r in collection.records)
    page = markdown_page(collection, tables, plots, _descriptions(benchmarks), label, refs)
    outputs = {
        "README.md": page.encode("utf-8"),
        "leaderboard.csv": csv_text(tables).encode("utf-8"),
        "index.html": html_page(page, plots).encode("utf-8"),
    }
    outputs.update({f"{PLOTS_DIR}/{name}": png for name, png in sorted(plots.items())})
    return Build(outputs, collection)


def regenerate(leaderboard_dir: Path, results_dir: Path | None = None) -> Build:
    """Write every output atomically and remove plots no table produces any more."""
    build = render(leaderboard_dir, results_dir)
    leaderboard_dir = Path(leaderboard_dir)
    for name, content in build.outputs.items():
        target = leaderboard_dir / name
        if not target.exists() or target.read_bytes() != content:
            atomic_write(target, lambda tmp, content=content: Path(tmp).write_bytes(content))
    plots_dir = leaderboard_dir / PLOTS_DIR
    if plots_dir.is_dir():
        for stale in plots_dir.glob("*.png"):
            if f"{PLOTS_DIR}/{stale.name}" not in build.outputs:
                stale.unlink()
    return build


def stale_outputs(leaderboard_dir: Path, results_dir: Path | None = None) -> list[str]:
    """Outputs that differ from what the records give (empty: the directory is up to date).

    PNG bytes depend on the matplotlib and FreeType build, so plots are compared by
    presence, and index.html with its embedded images masked; README.md and the CSV
    are compared byte for byte.
    """
    build = render(leaderboard_dir, results_dir, draw=False)
    leaderboard_dir = Path(leaderboard_dir)
    stale = []
    for name, content in build.outputs.items():
        target = leaderboard_dir / name
        if not target.is_file():
            stale.append(name)
            continue
        if name.endswith(".png"):
            continue
        on_disk = target.read_bytes()
        if name.endswith(".html"):
            on_disk, content = _DATA_URI.sub(b"data:", on_disk), _DATA_URI.sub(b"data:", content)
        if on_disk != content:
            stale.append(name)
    plots_dir = leaderboard_dir / PLOTS_DIR
    if plots_dir.is_dir():
        stale += sorted(
            f"{PLOTS_DIR}/{p.name}" for p in plots_dir.glob("*.png") if f"{PLOTS_DIR}/{p.name}" not in build.outputs
        )
    return stale
