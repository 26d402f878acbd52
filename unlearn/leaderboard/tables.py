"""Summary tables from result records: one per (benchmark, forget set), methods as rows.

Each table cell is a `Stat` (mean, std over seeds, count) kept as numbers, so the
text table of `unlearn run`, the leaderboard's markdown, CSV and HTML, and its plots
all render the same figures. The oracle (retrain) comes first, the original model
second, then methods by mean Avg. Gap (ties by name), so the order is stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from unlearn.errors import UserError
from unlearn.results import ORACLE, ResultRecord

ORIGINAL = "original"
IDEAL_ORACLE = "retrain-all-manipulated"
"""Corrective sets' second reference row: the oracle retrained without every manipulated sample."""
AVG_GAP = "Avg. Gap"
RUN_TIME = "RTE (s)"
LOWER_IS_BETTER = (AVG_GAP, RUN_TIME)
HIGHER_IS_BETTER = ("Samples/s",)
"""Columns where more is better whatever the oracle does (a generator's sampling speed)."""


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over the seeds that finished (`n` of them)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: pd.Series) -> "Stat":
        values = values.dropna().astype(float)
        if values.empty:
            return cls(None, None, 0)
        std = float(values.std(ddof=1)) if len(values) > 1 else None
        return cls(float(values.mean()), std, len(values))

    def text(self, digits: int = 2) -> str:
        """'m ± s' (or 'm' for one seed, '—' for none), with `digits` decimals."""
        if self.mean is None:
            return "—"
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True)
class Row:
    """One method of a table: its role (oracle, original or method), statistics and seed counts."""

    method: str
    role: str
    stats: dict[str, Stat]
    ok: int
    runs: int
    best: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Table:
    """Methods × columns for one (benchmark, forget set)."""

    benchmark: str
    forget: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]

    def row(self, method: str) -> Row:
        return next(r for r in self.rows if r.method == method)

    @property
    def oracle(self) -> Row | None:
        return next((r for r in self.rows if r.role == "oracle"), None)


def default_columns(records: Sequence[ResultRecord]) -> list[str]:
    """The records' gap metrics (in the order their benchmarks list them), Avg. Gap, the benchmarks'
    further report metrics (probe recovery, relearning, other attacks), the forget sets' own metrics
    (corrective sets: Manip-Acc, ASR), then run time. A table leaves out columns none of its rows has."""
    keys = dict.fromkeys(k for r in records for k in r.config.get("gap_metrics", []))
    extra = dict.fromkeys(k for r in records for k in r.config.get("report_metrics", []) if k not in keys)
    own = dict.fromkeys(k for r in records for k in forget_set_keys(r.forget.spec) if k not in keys and k not in extra)
    return [*keys, AVG_GAP, *extra, *own, RUN_TIME]


def forget_set_keys(forget: str) -> tuple[str, ...]:
    """The metric keys a forget set adds to its cells (its builder's extra metrics)."""
    from unlearn.forget import ForgetSpec
    from unlearn.metrics import METRICS

    try:
        names = ForgetSpec.parse(forget).builder.extra_metrics
    except UserError:
        return ()
    return tuple(k for name in names for k in METRICS.get(name).produces)


def records_frame(records: Sequence[ResultRecord]) -> pd.DataFrame:
    """One row per record: identifiers, status, metrics, Avg. Gap and run time (seconds)."""
    rows = []
    for r in records:
        row = {"benchmark": r.benchmark, "forget": r.forget.spec, "method": r.method, "seed": r.seed, "status": r.status}
        row.update(r.metrics)
        row[AVG_GAP] = r.gaps.get(AVG_GAP)
        row[RUN_TIME] = r.run_time_s
        rows.append(row)
    return pd.DataFrame(rows)


def _reference_rows(records: Sequence[ResultRecord]) -> list[dict]:
    """Rows for the original model, and for the oracle where no retrain record exists, once per seed.

    Every record carries its cell's original and oracle scores; the oracle row built
    from them has no run time (the oracle came from the cache or from another cell).
    Corrective cells add the ideal oracle (retrained without every manipulated sample).
    A seed counts only where a record holds the scores: one whose worker died before
    the cell's group was ready holds none.
    """
    has_retrain = {(r.benchmark, r.forget.spec, r.seed) for r in records if r.method == ORACLE}
    seen: dict[tuple, dict] = {}
    for r in records:
        cell = (r.benchmark, r.forget.spec, r.seed)
        base = {"benchmark": r.benchmark, "forget": r.forget.spec, "seed": r.seed, "status": "ok"}
        if r.original_metrics:
            seen.setdefault((*cell, ORIGINAL), {**base, "method": ORIGINAL, **r.original_metrics})
        if cell not in has_retrain and r.oracle_metrics:
            seen.setdefault((*cell, ORACLE), {**base, "method": ORACLE, **r.oracle_metrics, AVG_GAP: 0.0})
        if r.ideal_oracle_metrics:
            seen.setdefault((*cell, IDEAL_ORACLE), {**base, "method": IDEAL_ORACLE, **r.ideal_oracle_metrics})
    return list(seen.values())


def _role(method: str) -> str:
    return {ORACLE: "oracle", ORIGINAL: "original", IDEAL_ORACLE: "ideal"}.get(method, "method")


def _mark_best(rows: list[Row], columns: Sequence[str]) -> list[Row]:
    """Mark, per column, the methods closest to the oracle (lowest, for Avg. Gap and run time).

    Reference rows are never marked. Scores are compared at the two decimals shown,
    so methods that look tied are all marked.
    """
    oracle = next((r for r in rows if r.role == "oracle"), None)
    best: dict[str, set[str]] = {r.method: set() for r in rows}
    for col in columns:
        scores = {}
        for r in rows:
            stat = r.stats.get(col)
            if r.role != "method" or stat is None or stat.mean is None:
                continue
            if col in LOWER_IS_BETTER:
                scores[r.method] = round(stat.mean, 2)
            elif col in HIGHER_IS_BETTER:
                scores[r.method] = -round(stat.mean, 2)
            elif oracle is not None and oracle.stats.get(col) and oracle.stats[col].mean is not None:
                scores[r.method] = round(abs(stat.mean - oracle.stats[col].mean), 2)
        if scores:
            low = min(scores.values())
            for method, score in scores.items():
                if score == low:
                    best[method].add(col)
    return [Row(r.method, r.role, r.stats, r.ok, r.runs, frozenset(best[r.method])) for r in rows]


def summarize(records: Sequence[ResultRecord], columns: Sequence[str] | None = None) -> list[Table]:
    """One Table per (benchmark, forget set), in order of first appearance.

    `ok` counts the seeds that finished out of those run; failed seeds are left out
    of the statistics.
    """
    if not records:
        return []
    fixed = list(columns) if columns else None
    own = {k for r in records for k in forget_set_keys(r.forget.spec)}  # shown only in the tables that have them
    frame = pd.concat([records_frame(records), pd.DataFrame(_reference_rows(records))], ignore_index=True)
    tables = []
    for (benchmark, forget), part in frame.groupby(["benchmark", "forget"], sort=False):
        columns = fixed or default_columns([r for r in records if r.benchmark == benchmark])  # its own metrics
        rows = []
        for method in dict.fromkeys(part["method"]):
            runs = part[part["method"] == method]
            ok = runs[runs["status"] == "ok"]
            stats = {col: Stat.of(ok[col]) if col in ok else Stat(None, None, 0) for col in columns}
            rows.append(Row(method, _role(method), stats, len(ok), len(runs)))

        def order(row: Row) -> tuple:
            gap = row.stats.get(AVG_GAP)
            gap_mean = gap.mean if gap is not None and gap.mean is not None else math.inf
            return ({"oracle": 0, "ideal": 1, "original": 2}.get(row.role, 3), gap_mean, row.method)

        rows.sort(key=order)
        shown = tuple(c for c in columns if c not in own or any(row.stats[c].mean is not None for row in rows))
        tables.append(Table(str(benchmark), str(forget), shown, tuple(_mark_best(rows, shown))))
    return tables


def format_text(tables: Sequence[Table]) -> str:
    """Plain-text rendering for the terminal, each table under a one-line caption."""
    blocks = []
    for table in tables:
        caption = f"{table.benchmark} · forget {table.forget} · mean ± std over seeds (UA = 100 − forget accuracy, %)"
        frame = pd.DataFrame(
            [{"method": r.method, **{c: r.stats[c].text() for c in table.columns}, "ok": f"{r.ok}/{r.runs}"}
             for r in table.rows]
        )
        blocks.append(caption + "\n" + frame.to_string(index=False))
    return "\n\n".join(blocks)
