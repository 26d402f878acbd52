"""Render leaderboard tables as markdown (README.md), CSV and a self-contained HTML page.

The markdown is the single source of the page: the HTML is the same document
converted with Python-Markdown, styled inline, and with every plot embedded as a
data URI, so it opens offline with no other file. Nothing here reads a clock.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence

import markdown as md
import pandas as pd

from unlearn.leaderboard import glossary
from unlearn.leaderboard.leads import MARK, QUALITY_KEYS
from unlearn.leaderboard.plots import bar_column
from unlearn.leaderboard.references import Reference
from unlearn.leaderboard.stats import ALPHA
from unlearn.leaderboard.store import Collection
from unlearn.leaderboard.tables import HIGHER_IS_BETTER, LOWER_IS_BETTER, ROBUST_GAP, Table
from unlearn.names import control_free
from unlearn.results import ResultRecord, slug

ROLE_LABEL = {"oracle": " (oracle)", "original": " (before unlearning)", "ideal": " (ideal oracle)"}

REPO_FROM_BOARD = "../"
"""The repository root as seen from the leaderboard directory: links to docs/ start here."""


def legend() -> str:
    """How to read every table of the page; the bold rule is written from the columns' directions in tables.py."""
    lower = ", ".join(LOWER_IS_BETTER)
    higher = ", ".join(HIGHER_IS_BETTER)
    quality = ", ".join(QUALITY_KEYS)
    return f"""\
Each table is one benchmark and forget set. Rows are methods; each cell is the mean over seeds ± the
half-width of its 95 % confidence interval (Student t with n − 1 degrees of freedom; the standard
deviation stays in `leaderboard.csv`). A row with one seed has no interval, and its table says so. The
oracle (retrain) is the model retrained without the forget set: the closer a method is to it, the better.
Avg. Gap is the mean absolute difference from the oracle over a benchmark's gap metrics. Robust Gap adds
two attacks on what the model still knows, a linear probe on its frozen features and a few steps of
relearning, so a method that only hides the class behind its output layer keeps a high Robust Gap. Each
benchmark's section names the metrics its gaps average and explains every column;
[docs/metrics.md]({doc_target("docs/metrics.md")}) defines them all. A method's name
links to its documentation, and "paper" to the paper it comes from.

Methods are compared seed by seed with a paired t test (each seed's records share their original
model, oracle and forget set), at α = {ALPHA:g} with Holm's correction over the methods of a table.
**Rank** orders the methods on Robust Gap (on Avg. Gap where a benchmark's records have no probe and
relearn scores; a continual sequence's table, explained below it, on H after the last task, where higher
is better): rank 1 is the method with the lowest mean and every method not significantly
different from it; any other method ranks 1 + the number of methods with a lower mean. Rank 1 says
the seeds cannot tell a method from the best, not that it is as good: with three seeds the test sees
only large, steady differences, so read the intervals too. Rows follow the rank, then the mean.
**Bold** marks, per column, the best method and every method not significantly different from it,
testing per-seed scores: the lowest value in {lower}; the highest in {higher}; in every other column
the value closest to the oracle's. {MARK} marks a mean better than the oracle's on a quality metric ({quality}) by
more than the 95 % interval of the paired differences: Avg. Gap still counts that lead as a gap, and the note under
the table says how much. **vs original** compares each method with the original model, doing
nothing, on the ranking column: ≈ original means the seeds cannot tell the method from doing nothing at
all. Seeds counts the seeds that finished out of those run; failed seeds are left out of the means."""


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_HTML_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_CODE_SAFE = re.compile(r"[^`|\\\t\n\r\f\v]*")
"""What a code span may hold: no backtick (it would end the span), no `|` (a table cell), no backslash."""


def text(value: object, limit: int = 300) -> str:
    """Any value as inline Markdown that renders as exactly its characters: the one escaper of this module.

    Control characters and line separators become visible escapes (so a newline cannot start a heading or a
    table row), Markdown's inline syntax is backslash-escaped (so `|` cannot add a cell and `[` cannot open a
    link) and `&`, `<`, `>` become HTML entities (so no tag can form, whatever renders the page); text beyond
    `limit` characters is cut with '…'. Raw HTML is also switched off in the HTML conversion (`html_page`).
    """
    raw = str(value)
    raw = raw if len(raw) <= limit else raw[: limit - 1] + "…"
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", control_free(raw))
    return "".join(_HTML_SPECIAL.get(ch, ch) for ch in escaped)


def code(value: object, limit: int = 300) -> str:
    """`value` as a Markdown code span when nothing in it can end or escape one, else as escaped `text`."""
    raw = str(value)
    if len(raw) <= limit and raw and _CODE_SAFE.fullmatch(raw) and control_free(raw) == raw:
        return f"`{raw}`"
    return text(raw, limit)


def link_target(path: str) -> str:
    """A relative link target: every character a URL or Markdown could read as syntax percent-encoded."""
    return urllib.parse.quote(path, safe="/._-+")


def doc_target(path: str) -> str:
    """The link from the leaderboard directory to a doc given relative to the repository root, `#anchor` kept."""
    file, hashmark, anchor = path.partition("#")
    return link_target(REPO_FROM_BOARD + file) + hashmark + link_target(anchor)


def plot_name(benchmark: str, forget: str | None = None) -> str:
    """File name under plots/ of a table's trade-off plot, or of a benchmark's gap bars."""
    if forget is None:
        return f"{slug(benchmark)}-gaps.png"
    return f"{slug(benchmark)}--{slug(forget)}-tradeoff.png"


def method_cell(method: str, refs: Mapping[str, Reference] | None = None) -> str:
    """A method's name as Markdown: a link to its documentation, then a link to its paper, where known."""
    ref = (refs or {}).get(method)
    name = text(method)
    if ref is None:
        return name
    if ref.docs is not None:
        name = f"[{name}]({doc_target(ref.docs)})"
    return f"{name} ([paper]({ref.paper}))" if ref.paper is not None else name


def markdown_table(table: Table, refs: Mapping[str, Reference] | None = None) -> str:
    """A GitHub-flavoured markdown table of `table`: rank, method (linked to its `refs`), the columns (rank-1 values
    in bold), seeds and the comparison with the original model, then the table's notes."""
    ranked = table.headline is not None
    header = [*(["Rank"] if ranked else []), "Method", *(text(c) for c in table.columns), "Seeds",
              *(["vs original"] if ranked else [])]
    align = " :-- |" * (2 if ranked else 1) + " --: |" * (len(table.columns) + 1) + (" :-- |" if ranked else "")
    lines = ["| " + " | ".join(header) + " |", "|" + align]
    for row in table.rows:
        cells = [str(row.rank) if row.rank is not None else "—"] if ranked else []
        cells.append(f"{method_cell(row.method, refs)}{ROLE_LABEL.get(row.role, '')}")
        for col in table.columns:
            shown = text(row.text(col))
            cells.append(f"**{shown}**" if col in row.best else shown)
        cells.append(text(row.seeds))
        if ranked:
            cells.append(text(row.verdict))
        lines.append("| " + " | ".join(cells) + " |")
    notes = table.notes()
    if notes:
        lines += ["", " ".join(text(n) for n in notes)]
    return "\n".join(lines)


def columns_legend(records: Sequence[ResultRecord], tables: Sequence[Table]) -> str:
    """What a benchmark's gaps average (from its records' gap metrics) and what each of its columns means."""
    gap, deep = glossary.gap_keys(records)
    out = []
    if gap:
        line = f"**Avg. Gap** averages \\|method − oracle\\| over {', '.join(text(k) for k in gap)}"
        if deep and any(ROBUST_GAP in t.columns for t in tables):
            line += f"; **Robust Gap** over those and {', '.join(text(k) for k in deep)}"
        out += [line + ". The columns:", ""]
    metrics = glossary.metric_names(records)
    for column in dict.fromkeys(c for t in tables for c in t.columns):
        found = glossary.describe(column, metrics)
        meaning = text(found[0], 500) if found else "no description (a metric this page does not know)"
        if found and found[1]:
            meaning += f" ([docs]({doc_target(found[1])}))"
        rule = glossary.bold_rule(column)
        bold = f"; bold: the {rule}" if rule != "closest to the oracle" else ""
        out.append(f"- **{text(column)}**: {meaning}{bold}.")
    return "\n".join(out)


def _methods_table(records: Sequence[ResultRecord], refs: Mapping[str, Reference] | None = None) -> str:
    """Per method of one benchmark: track, hyperparameters, where the code came from, who submitted it."""
    first: dict[str, ResultRecord] = {}
    for r in records:
        first.setdefault(r.method, r)
    lines = ["| Method | Track | Hyperparameters | Origin | Submitted by |", "| :-- | :-- | :-- | :-- | :-- |"]
    for method in sorted(first):
        r = first[method]
        hparams = json.dumps(r.hparams, sort_keys=True)
        by = r.submission.submitted_by if r.submission is not None else "—"
        lines.append(
            f"| {method_cell(method, refs)} | {text(r.track)} | {code(hparams, 1000)} | {text(r.method_origin)} | {text(by)} |"
        )
    return "\n".join(lines)


def _provenance(records: Sequence[ResultRecord]) -> str:
    """The distinct package versions, commits and devices that produced a benchmark's records."""

    def distinct(values) -> str:
        return ", ".join(text(v) for v in sorted({str(v) for v in values})) or "—"

    commits = distinct((r.env.git_commit or "unknown")[:12] for r in records)
    return (
        f"Produced with unlearn {distinct(r.env.packages.get('unlearn') for r in records)} "
        f"(commits {commits}), torch {distinct(r.env.packages.get('torch') for r in records)}, "
        f"Python {distinct(r.env.python for r in records)}, on {distinct(r.env.device for r in records)}."
    )


def markdown_page(
    collection: Collection,
    tables: Sequence[Table],
    plots: Mapping[str, bytes],
    descriptions: Mapping[str, str],
    results_label: str,
    refs: Mapping[str, Reference] | None = None,
) -> str:
    """The whole README.md: legend, then per benchmark (in the order of `tables`) what its columns mean, its
    tables, plots, methods (linked to their `refs`) and provenance."""
    out = [
        "# Leaderboard",
        "",
        f"Generated by `unlearn leaderboard` from the {len(collection.records)} result records under "
        f"`{results_label}`. Do not edit by hand: submit records with `unlearn submit` and regenerate. "
        "The same tables are in `leaderboard.csv`, and `index.html` is a self-contained page with the plots.",
        "",
        legend(),
    ]
    benchmarks = list(dict.fromkeys(t.benchmark for t in tables))
    for benchmark in benchmarks:
        records = [r for r in collection.records if r.benchmark == benchmark]
        out += ["", f"## {text(benchmark)}", ""]
        if benchmark in descriptions:
            out += [text(descriptions[benchmark], 1000), ""]
        out += [columns_legend(records, [t for t in tables if t.benchmark == benchmark]), ""]
        for table in (t for t in tables if t.benchmark == benchmark):
            out += [f"### {text(benchmark)} · forget {code(table.forget)}", "", markdown_table(table, refs), ""]
            links = _sample_links(collection, table)
            if links:
                out += [links, ""]
            name = plot_name(benchmark, table.forget)
            if name in plots:
                out += [f"![efficacy vs specificity, forget {text(table.forget)}]({link_target('plots/' + name)})", ""]
        name = plot_name(benchmark)
        column = bar_column([t for t in tables if t.benchmark == benchmark])
        if name in plots and column is not None:
            out += [f"### {text(benchmark)} · {text(column)} per method", "",
                    f"![{text(column)} per method]({link_target('plots/' + name)})", ""]
        out += [f"### {text(benchmark)} · methods", "", _methods_table(records, refs), "", _provenance(records)]
    if collection.skipped:
        out += ["", "## Skipped records", "", "These files were not used:", ""]
        out += [f"- {code(s.path)}: {text(s.reason, 500)}" for s in collection.skipped]
    if not tables:
        out += ["", "No records yet."]
    return "\n".join(out) + "\n"


def _sample_links(collection: Collection, table: Table) -> str:
    """Links to the sample grids (PNG files next to the records) of a generation table's methods, or ''."""
    found: dict[str, list[str]] = {}
    for path, r in zip(collection.paths, collection.records, strict=True):
        if r.benchmark == table.benchmark and r.forget.spec == table.forget and "samples" in r.artifacts:
            target = path.rsplit("/", 1)[0] + "/" + r.artifacts["samples"]
            found.setdefault(r.method, []).append(f"[seed {r.seed}]({link_target(target)})")
    if not found:
        return ""
    order = [row.method for row in table.rows if row.method in found]
    parts = [f"{text(m)} {' '.join(found[m])}" for m in order]
    return "Samples per class, original model left, method right: " + " · ".join(parts)


def csv_text(tables: Sequence[Table]) -> str:
    """Every table in one CSV: one row per (benchmark, forget set, method) with its rank on the table's headline
    column, its Holm-adjusted p-values against the best method and the original model there (and the verdict
    against the original), and per column the mean, std and 95 % confidence interval over seeds."""
    rows = []
    for table in tables:
        for row in table.rows:
            entry = {"benchmark": table.benchmark, "forget": table.forget, "method": row.method, "role": row.role,
                     "ranked by": table.headline, "rank": row.rank,
                     "p vs best (Holm)": row.versus_best.p if row.versus_best is not None else None,
                     "vs original": row.verdict,
                     "p vs original (Holm)": row.versus_original.p if row.versus_original is not None else None}
            for col in table.columns:
                stat = row.stats[col]
                entry[f"{col} mean"] = stat.mean
                entry[f"{col} std"] = stat.std
                entry[f"{col} ci_low"] = stat.ci_low
                entry[f"{col} ci_high"] = stat.ci_high
            entry["seeds ok"] = row.ok
            entry["seeds run"] = row.runs
            entry["seeds collapsed"] = row.collapsed
            entry["best"] = ";".join(c for c in table.columns if c in row.best)
            entry["beats oracle"] = ";".join(lead.column for lead in row.leads)
            rows.append(entry)
    buffer = io.StringIO()
    frame = pd.DataFrame(rows)
    if "rank" in frame:
        frame["rank"] = frame["rank"].astype("Int64")
    frame.to_csv(buffer, index=False, float_format="%.4f", lineterminator="\n")
    return buffer.getvalue()


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222;
       overflow-wrap: anywhere; }
.scroll { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; overflow-wrap: normal; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
td { white-space: nowrap; }
th { background: #f3f3f3; }
tbody tr:nth-child(-n+2) { background: #fafafa; }
strong { color: #0a5; }
img { max-width: 100%; height: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def html_page(page_markdown: str, plots: Mapping[str, bytes]) -> str:
    """The README as a standalone HTML page, with plots inlined as data URIs and inline CSS only; each table sits
    in its own horizontal scroll box, so a wide table never widens the page."""
    converter = md.Markdown(extensions=["tables"])
    converter.preprocessors.deregister("html_block")  # raw HTML in the text stays text, never markup
    converter.inlinePatterns.deregister("html")
    body = converter.convert(page_markdown)
    # raw HTML is off, so every <table> tag here came from the converter, never from a record
    body = body.replace("<table>", '<div class="scroll"><table>').replace("</table>", "</table></div>")
    for name in sorted(plots):
        uri = "data:image/png;base64," + base64.b64encode(plots[name]).decode("ascii")
        body = body.replace(f'src="{html.escape(link_target("plots/" + name))}"', f'src="{uri}"')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape('unlearn leaderboard')}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
