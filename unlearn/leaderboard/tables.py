"""Summary tables from result records: one per (benchmark, forget set), methods as rows.

Each table cell is a `Stat` (mean over seeds, std, 95 % CI half-width, count) kept as
numbers, and each row keeps its per-seed values, so the text table of `unlearn run`, the
leaderboard's markdown, CSV and HTML, and its plots all render the same figures. The
oracle (retrain) comes first, the original model second, then methods by rank on the
table's headline column (Robust Gap where the records have the probe and relearn scores,
else Avg. Gap), then by its mean, then by name, so the order is stable. Ranks, bold and the
comparison with the original model come from paired tests over seeds (unlearn.leaderboard.stats).

A table's `Layout` chooses its columns, its headline, which columns are better higher or
lower and the notes that explain them. The gap layout here is the default; a layout
registered in LAYOUTS takes the tables whose records it claims (the continual sequences:
unlearn.leaderboard.continual_table).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from unlearn.collapse import COLLAPSED_NOTE
from unlearn.errors import UserError
from unlearn.leaderboard.leads import MARK, Lead, leads
from unlearn.leaderboard.stats import Comparison, Scores, Stat, compare, ranking, ranks
from unlearn.results import ORACLE, ResultRecord

ORIGINAL = "original"
IDEAL_ORACLE = "retrain-all-manipulated"
"""Corrective sets' second reference row: the oracle retrained without every manipulated sample."""
AVG_GAP = "Avg. Gap"
ROBUST_GAP = "Robust Gap"
DEPTH_METRICS = ("Probe-F", "Relearn-FA")
"""The attacks Robust Gap adds to the gap metrics: probe accuracy on held-out forgotten samples read from the
frozen features, and forget accuracy after the relearn attack (both in %, like UA)."""
RUN_TIME = "RTE (s)"
LOWER_IS_BETTER = (AVG_GAP, ROBUST_GAP, RUN_TIME)
HIGHER_IS_BETTER = ("Samples/s",)
"""Columns where more is better whatever the oracle does (a generator's sampling speed)."""
HEADLINES = (ROBUST_GAP, AVG_GAP)
"""The columns a table ranks by, the first it has."""
NOT_TESTED = "—"
LIKE_ORIGINAL = "≈ original"
UNDEFINED = "n.d."
"""A cell whose metric is undefined on every seed (a degenerate membership attack, docs/metrics.md)."""
FEWER_KEYS = "†"
"""Marks an Avg. Gap or Robust Gap that some seed averages over fewer keys (one undefined for the model or oracle)."""
UNDEFINED_COLUMN, SHORT_COLUMN = "_undefined", "_short"
"""Frame columns: per record, the metric keys undefined for its model, and the gap columns averaged over fewer keys."""


@dataclass(frozen=True)
class Row:
    """One method of a table: its role (oracle, original or method), statistics and seed counts.

    `values` holds each column's value per seed that finished; `best` the columns where the method ranks
    first (bold); `rank` its rank on the table's headline column; `versus_best` and `versus_original` its
    paired comparisons there with the best method and with the original model (None for reference rows, for
    the best method itself, and where there is no headline); `leads` the quality columns where it beats the oracle
    by more than the interval (`unlearn.leaderboard.leads`).
    """

    method: str
    role: str
    stats: dict[str, Stat]
    ok: int
    runs: int
    best: frozenset[str] = frozenset()
    values: Mapping[str, Mapping[int, float]] = field(default_factory=dict)
    rank: int | None = None
    versus_best: Comparison | None = None
    versus_original: Comparison | None = None
    collapsed: int = 0
    """Seeds among those that finished whose run collapsed (unlearn.collapse); they stay in the statistics."""
    undefined: Mapping[str, int] = field(default_factory=dict)
    """Per column, the number of finished seeds where the metric is undefined (left out of its statistics)."""
    short: frozenset[str] = frozenset()
    """The gap columns (Avg. Gap, Robust Gap) that some seed averages over fewer keys."""
    leads: tuple[Lead, ...] = ()

    @property
    def seeds(self) -> str:
        """The Seeds cell: finished out of run, and how many of those collapsed."""
        return f"{self.ok}/{self.runs}" + (f", {self.collapsed} collapsed" if self.collapsed else "")

    def leads_on(self, column: str) -> bool:
        """Whether the row beats the oracle in `column` by more than the interval (its cells carry MARK)."""
        return any(lead.column == column for lead in self.leads)

    def text(self, column: str) -> str:
        """The cell of `column`: 'm ± h'; 'n.d.' where undefined on every seed; '(n = k)' after the statistics of
        k seeds where others are undefined; FEWER_KEYS after a gap averaged over fewer keys on some seed; MARK where
        the row beats the oracle there (leads.py)."""
        stat, undefined = self.stats[column], self.undefined.get(column, 0)
        shown = UNDEFINED if stat.mean is None and undefined else stat.text()
        if stat.mean is not None and undefined:
            shown += f" (n = {stat.n})"
        shown += f" {FEWER_KEYS}" if column in self.short else ""
        return f"{shown} {MARK}" if self.leads_on(column) else shown

    @property
    def verdict(self) -> str:
        """'≈ original' when the method is not significantly different from doing nothing on the headline,
        'better' or 'worse' when it is, '—' when untested (a reference row, or fewer than two seeds)."""
        c = self.versus_original
        if c is None or c.p is None:
            return NOT_TESTED
        if not c.significant:
            return LIKE_ORIGINAL
        return "better" if c.diff < 0 else "worse"


@dataclass(frozen=True)
class Table:
    """Methods × columns for one (benchmark, forget set), ranked by `headline` (None: no gap column), laid out by
    the layout registered as `layout`."""

    benchmark: str
    forget: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    headline: str | None = None
    layout: str = "gap"

    def row(self, method: str) -> Row:
        return next(r for r in self.rows if r.method == method)

    @property
    def oracle(self) -> Row | None:
        return next((r for r in self.rows if r.role == "oracle"), None)

    @property
    def methods(self) -> tuple[Row, ...]:
        """The rows of methods (no reference rows), in table order."""
        return tuple(r for r in self.rows if r.role == "method")

    def notes(self) -> list[str]:
        """One-line notes that a reader of the table needs: what ± is, what it is ranked by, and why a row
        has no interval."""
        out = layout_named(self.layout).notes(self)
        if any(r.undefined.get(c) for r in self.rows for c in self.columns):
            out.append(f"{UNDEFINED}: undefined on every seed (a degenerate attack: one feature value, or a shadow "
                       "set not separable beyond chance; docs/metrics.md); (n = k): the statistics of the k seeds "
                       "where it is defined.")
        if any(r.short & set(self.columns) for r in self.rows):
            out.append(f"{FEWER_KEYS}: on some seed a gap metric is undefined for the model or the oracle, and "
                       "the gap averages the others only.")
        counts = [r.ok for r in self.methods] or [r.ok for r in self.rows]
        if any(r.collapsed for r in self.rows):
            out.append(COLLAPSED_NOTE)
        if counts and max(counts) <= 1:
            out.append("One seed: no interval and no test; rank and bold follow the means as shown.")
        elif counts and min(counts) <= 1:
            out.append("A method with one finished seed has no interval and is compared by its mean as shown.")
        out += [lead.note(r.method) for r in self.rows for lead in r.leads]
        return out


def gap_keys(records: Sequence[ResultRecord]) -> list[str]:
    """The gap metrics of the records, in the order their benchmarks list them."""
    return list(dict.fromkeys(k for r in records for k in r.config.get("gap_metrics", [])))


def default_columns(records: Sequence[ResultRecord]) -> list[str]:
    """The records' gap metrics (in the order their benchmarks list them), Avg. Gap, Robust Gap, the benchmarks'
    further report metrics (probe recovery, relearning, other attacks), the attacks Robust Gap adds where not
    listed yet, the forget sets' own metrics (corrective sets: Manip-Acc, ASR), then run time. A table leaves out
    Robust Gap, its attacks and the forget sets' own metrics where none of its rows has them."""
    keys = dict.fromkeys(gap_keys(records))
    extra = dict.fromkeys(k for r in records for k in r.config.get("report_metrics", []) if k not in keys)
    depth = [k for k in DEPTH_METRICS if k not in keys and k not in extra]
    own = dict.fromkeys(k for r in records for k in forget_set_keys(r.forget.spec)
                        if k not in keys and k not in extra and k not in depth)
    return [*keys, AVG_GAP, ROBUST_GAP, *extra, *depth, *own, RUN_TIME]


def forget_set_keys(forget: str) -> tuple[str, ...]:
    """The metric keys a forget set adds to its cells (its builder's extra metrics)."""
    from unlearn.forget import ForgetSpec
    from unlearn.metrics import METRICS

    try:
        names = ForgetSpec.parse(forget).builder.extra_metrics
    except UserError:
        return ()
    return tuple(k for name in names for k in METRICS.get(name).produces)


def mean_gap(scores: Mapping[str, float], oracle: Mapping[str, float], keys: Sequence[str]) -> float | None:
    """Mean of |score − oracle| over the `keys` both sides define (a key is absent where it is undefined, as in
    `unlearn.metrics.gaps`); None when there is none."""
    defined = [k for k in keys if k in scores and k in oracle]
    if not defined:
        return None
    return float(np.mean([abs(scores[k] - oracle[k]) for k in defined]))


def fewer_keys(scores: Mapping[str, float], oracle: Mapping[str, float], keys: Sequence[str] | None) -> bool:
    """Whether `mean_gap` over `keys` leaves some out (undefined on either side)."""
    return bool(keys) and any(k not in scores or k not in oracle for k in keys)


def _short(scores: Mapping[str, float], oracle: Mapping[str, float], record: ResultRecord) -> frozenset[str]:
    """The gap columns of `scores` (against `oracle`) that average over fewer keys than `record`'s gap metrics."""
    return frozenset(col for col, keys in ((AVG_GAP, record.config.get("gap_metrics", [])),
                                            (ROBUST_GAP, robust_keys(record))) if fewer_keys(scores, oracle, keys))


def robust_keys(record: ResultRecord) -> list[str] | None:
    """The keys Robust Gap averages over for `record`: its gap metrics and DEPTH_METRICS, or None when the
    record lacks a depth metric in its metrics or its oracle's (the generation track)."""
    gap = list(record.config.get("gap_metrics", []))
    if not gap or any(k not in record.metrics or k not in record.oracle_metrics for k in DEPTH_METRICS):
        return None
    return [*gap, *DEPTH_METRICS]


def robust_gap(record: ResultRecord) -> float | None:
    """Mean |metric − oracle| over the gap metrics and the depth-of-forgetting attacks (docs/metrics.md)."""
    keys = robust_keys(record)
    return None if keys is None else mean_gap(record.metrics, record.oracle_metrics, keys)


def records_frame(records: Sequence[ResultRecord]) -> pd.DataFrame:
    """One row per record: identifiers, status, metrics, Avg. Gap, Robust Gap and run time (seconds)."""
    rows = []
    for r in records:
        row = {"benchmark": r.benchmark, "forget": r.forget.spec, "method": r.method, "seed": r.seed, "status": r.status,
               "collapsed": r.is_collapsed}
        row.update(r.metrics)
        row[AVG_GAP] = r.gaps.get(AVG_GAP)
        row[ROBUST_GAP] = robust_gap(r) if r.status == "ok" else None
        row[RUN_TIME] = r.run_time_s
        row[UNDEFINED_COLUMN] = frozenset(r.undefined.get("method", {}))
        row[SHORT_COLUMN] = _short(r.metrics, r.oracle_metrics, r) if r.status == "ok" else frozenset()
        rows.append(row)
    return pd.DataFrame(rows)


def _reference_rows(records: Sequence[ResultRecord]) -> list[dict]:
    """Rows for the original model, and for the oracle where no retrain record exists, once per seed.

    Every record carries its cell's original and oracle scores; the oracle row built
    from them has no run time (the oracle came from the cache or from another cell).
    The original row's Avg. Gap and Robust Gap are its distance to the oracle of the same
    seed, as a method's are: the score of doing nothing.
    Corrective cells add the ideal oracle (retrained without every manipulated sample).
    A seed counts only where a record holds the scores: one whose worker died before
    the cell's group was ready holds none.
    """
    has_retrain = {(r.benchmark, r.forget.spec, r.seed) for r in records if r.method == ORACLE}
    seen: dict[tuple, dict] = {}
    for r in records:
        cell = (r.benchmark, r.forget.spec, r.seed)
        base = {"benchmark": r.benchmark, "forget": r.forget.spec, "seed": r.seed, "status": "ok"}
        keys = robust_keys(r)
        if r.original_metrics:
            gaps = {AVG_GAP: mean_gap(r.original_metrics, r.oracle_metrics, r.config.get("gap_metrics", [])),
                    ROBUST_GAP: mean_gap(r.original_metrics, r.oracle_metrics, keys or [])}
            seen.setdefault((*cell, ORIGINAL), {**base, "method": ORIGINAL, **r.original_metrics, **gaps,
                                                UNDEFINED_COLUMN: frozenset(r.undefined.get("original", {})),
                                                SHORT_COLUMN: _short(r.original_metrics, r.oracle_metrics, r)})
        if cell not in has_retrain and r.oracle_metrics:
            zero = {AVG_GAP: 0.0, ROBUST_GAP: 0.0 if keys else None}
            seen.setdefault((*cell, ORACLE), {**base, "method": ORACLE, **r.oracle_metrics, **zero,
                                              UNDEFINED_COLUMN: frozenset(r.undefined.get("oracle", {}))})
        if r.ideal_oracle_metrics:
            seen.setdefault((*cell, IDEAL_ORACLE), {**base, "method": IDEAL_ORACLE, **r.ideal_oracle_metrics,
                                                    UNDEFINED_COLUMN: frozenset(r.undefined.get("ideal_oracle", {}))})
    return list(seen.values())


def _role(method: str) -> str:
    return {ORACLE: "oracle", ORIGINAL: "original", IDEAL_ORACLE: "ideal"}.get(method, "method")


class Layout:
    """How a kind of table is laid out: the default, gap tables (a subclass registered in LAYOUTS lays out the
    tables whose records it claims)."""

    def claims(self, records: Sequence[ResultRecord]) -> bool:
        """Whether the records of one (benchmark, forget set) take this layout."""
        return True

    def columns(self, records: Sequence[ResultRecord], benchmark_records: Sequence[ResultRecord],
                fixed: Sequence[str] | None) -> list[str]:
        """The table's columns: `fixed` when given, else the benchmark's `default_columns` (optional ones that no
        row has are left out afterwards)."""
        return list(fixed) if fixed else default_columns(benchmark_records)

    def headline(self, shown: Sequence[str]) -> str | None:
        """The column the table ranks by: the first of HEADLINES it shows."""
        return next((c for c in HEADLINES if c in shown), None)

    def direction(self, column: str) -> int:
        """-1 where lower is better whatever the oracle does, +1 where higher is, 0 where closer to the oracle is."""
        return -1 if column in LOWER_IS_BETTER else 1 if column in HIGHER_IS_BETTER else 0

    def notes(self, table: Table) -> list[str]:
        """Notes on the table's columns and ranking."""
        if table.headline is None:
            return []
        why = "" if table.headline == ROBUST_GAP else " (these records have no probe and relearn scores)"
        return [f"Ranked by {table.headline}{why}."]


GAP_LAYOUT = Layout()
LAYOUTS: dict[str, Layout] = {}
"""Layouts other than the gap layout, by name, tried in registration order (`layout_for`)."""


def register_layout(name: str) -> Callable[[type[Layout]], type[Layout]]:
    """Class decorator: register an instance of a Layout subclass under `name`."""

    def decorate(cls: type[Layout]) -> type[Layout]:
        if name in LAYOUTS or name == "gap":
            raise ValueError(f"table layout {name!r} is registered twice")
        LAYOUTS[name] = cls()
        return cls

    return decorate


def layout_for(records: Sequence[ResultRecord]) -> str:
    """The name of the first registered layout that claims `records`, else 'gap'."""
    return next((name for name, layout in LAYOUTS.items() if layout.claims(records)), "gap")


def layout_named(name: str) -> Layout:
    return LAYOUTS.get(name, GAP_LAYOUT)


def column_scores(rows: Sequence[Row], column: str, layout: Layout = GAP_LAYOUT) -> Scores:
    """Per method row, its per-seed score in `column`, lower is better: the value itself where lower is better
    (Avg. Gap, Robust Gap, run time), its negative where higher is (`Layout.direction`), else the distance
    |value − oracle| to the oracle of the same seed (seeds the oracle lacks are left out)."""
    oracle = next((r for r in rows if r.role == "oracle"), None)
    reference = oracle.values.get(column, {}) if oracle is not None else {}
    direction = layout.direction(column)
    scores: dict[str, dict[int, float]] = {}
    for r in rows:
        values = r.values.get(column, {})
        if r.role != "method" or not values:
            continue
        if direction < 0:
            scores[r.method] = dict(values)
        elif direction > 0:
            scores[r.method] = {s: -v for s, v in values.items()}
        elif reference:
            scores[r.method] = {s: abs(v - reference[s]) for s, v in values.items() if s in reference}
    return {m: v for m, v in scores.items() if v}


def _judge(rows: list[Row], columns: Sequence[str], headline: str | None, layout: Layout) -> list[Row]:
    """Bold, per column, the best method and every method not significantly different from it; rank the
    methods on the headline and compare each with the original model there (on values turned lower-is-better
    where the headline is better higher). Reference rows are never marked."""
    best: dict[str, set[str]] = {r.method: set() for r in rows}
    for col in columns:
        for method, rank in ranks(column_scores(rows, col, layout)).items():
            if rank == 1:
                best[method].add(col)
    rank: dict[str, int] = {}
    to_best: dict[str, Comparison] = {}
    versus: dict[str, Comparison] = {}
    if headline is not None:
        rank, to_best = ranking(column_scores(rows, headline, layout))
        original = next((r for r in rows if r.role == "original"), None)
        if original is not None and original.values.get(headline):
            sign = -1.0 if layout.direction(headline) > 0 else 1.0

            def lower_better(values: Mapping[int, float]) -> dict[int, float]:
                return {s: sign * v for s, v in values.items()}

            methods = {r.method: lower_better(r.values[headline])
                       for r in rows if r.role == "method" and r.values.get(headline)}
            versus = compare(methods, lower_better(original.values[headline]))
    return [replace(r, best=frozenset(best[r.method]), rank=rank.get(r.method), versus_best=to_best.get(r.method),
                    versus_original=versus.get(r.method)) for r in rows]


def _row(method: str, runs: pd.DataFrame, columns: Sequence[str]) -> Row:
    """A method's row from its records' frame: statistics over the seeds that finished, and their values."""
    ok = runs[runs["status"] == "ok"]
    stats, values = {}, {}
    for col in columns:
        if col not in ok:
            stats[col], values[col] = Stat(None, None, 0), {}
            continue
        present = ok[["seed", col]].dropna()
        stats[col] = Stat.of(present[col])
        values[col] = {int(s): float(v) for s, v in zip(present["seed"], present[col], strict=True)}
    collapsed = int(ok["collapsed"].fillna(False).astype(bool).sum()) if "collapsed" in ok else 0
    marks = {name: [m for m in ok[name] if isinstance(m, frozenset)] if name in ok else []
             for name in (UNDEFINED_COLUMN, SHORT_COLUMN)}
    undefined = {col: n for col in columns if (n := sum(col in m for m in marks[UNDEFINED_COLUMN]))}
    short = frozenset(col for m in marks[SHORT_COLUMN] for col in m)
    return Row(method, _role(method), stats, len(ok), len(runs), values=values, undefined=undefined, short=short,
               collapsed=collapsed)


def _with_leads(rows: list[Row], keys: Sequence[str]) -> list[Row]:
    """The rows, methods' and the original's with their leads over the oracle on quality gap metrics."""
    oracle = next((r for r in rows if r.role == "oracle"), None)
    if oracle is None:
        return rows
    return [replace(r, leads=leads(r.values, oracle.values, keys)) if r.role in ("method", "original") else r
            for r in rows]


def summarize(records: Sequence[ResultRecord], columns: Sequence[str] | None = None) -> list[Table]:
    """One Table per (benchmark, forget set), in order of first appearance.

    `ok` counts the seeds that finished out of those run; failed seeds are left out
    of the statistics. Robust Gap, its attacks and a forget set's own metrics are left
    out of a table none of whose rows has them. Each table's layout (`layout_for` its
    records) chooses its columns from `columns` and its records, and its headline.
    """
    if not records:
        return []
    fixed = list(columns) if columns else None
    own = {k for r in records for k in forget_set_keys(r.forget.spec)}  # shown only in the tables that have them
    optional = own | {ROBUST_GAP, *DEPTH_METRICS}
    frame = pd.concat([records_frame(records), pd.DataFrame(_reference_rows(records))], ignore_index=True)
    tables = []
    for (benchmark, forget), part in frame.groupby(["benchmark", "forget"], sort=False):
        mine = [r for r in records if r.benchmark == benchmark and r.forget.spec == forget]
        name = layout_for(mine)
        layout = layout_named(name)
        columns = layout.columns(mine, [r for r in records if r.benchmark == benchmark], fixed)  # its own metrics
        rows = [_row(method, part[part["method"] == method], columns) for method in dict.fromkeys(part["method"])]
        shown = tuple(c for c in columns if c not in optional or any(row.stats[c].mean is not None for row in rows))
        headline = layout.headline(shown)
        rows = _with_leads(_judge(rows, shown, headline, layout), [k for k in gap_keys(mine) if k in shown])
        sign = -1.0 if headline is not None and layout.direction(headline) > 0 else 1.0

        def order(row: Row, headline: str | None = headline, sign: float = sign) -> tuple:
            mean = row.stats[headline].mean if headline is not None else None
            return ({"oracle": 0, "ideal": 1, "original": 2}.get(row.role, 3),
                    row.rank if row.rank is not None else math.inf,
                    sign * mean if mean is not None else math.inf, row.method)

        rows.sort(key=order)
        tables.append(Table(str(benchmark), str(forget), shown, tuple(rows), headline, name))
    return tables
