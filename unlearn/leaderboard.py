"""Tables from result records: one per (benchmark, forget set), methods as rows, mean ± std over seeds."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from unlearn.results import ResultRecord

ORIGINAL = "original"
ORACLE = "retrain"


def records_frame(records: Sequence[ResultRecord]) -> pd.DataFrame:
    """One row per record: identifiers, status, metrics, gaps and run time (seconds)."""
    rows = []
    for r in records:
        row = {"benchmark": r.benchmark, "forget": r.forget.spec, "method": r.method, "seed": r.seed, "status": r.status}
        row.update(r.metrics)
        row["Avg. Gap"] = r.gaps.get("Avg. Gap")
        row["RTE (s)"] = r.run_time_s
        rows.append(row)
    return pd.DataFrame(rows)


def _reference_rows(records: Sequence[ResultRecord]) -> list[dict]:
    """Rows for the original model, and for the oracle where no retrain record exists, once per seed.

    Every record carries its cell's original and oracle scores; the oracle row built
    from them has no run time (the oracle came from the cache or from another cell).
    """
    has_retrain = {(r.benchmark, r.forget.spec, r.seed) for r in records if r.method == ORACLE}
    seen: dict[tuple, dict] = {}
    for r in records:
        cell = (r.benchmark, r.forget.spec, r.seed)
        base = {"benchmark": r.benchmark, "forget": r.forget.spec, "seed": r.seed, "status": "ok"}
        seen.setdefault((*cell, ORIGINAL), {**base, "method": ORIGINAL, **r.original_metrics})
        if cell not in has_retrain:
            seen.setdefault((*cell, ORACLE), {**base, "method": ORACLE, **r.oracle_metrics, "Avg. Gap": 0.0})
    return list(seen.values())


def _mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def summary_tables(records: Sequence[ResultRecord], columns: Sequence[str]) -> dict[tuple[str, str], pd.DataFrame]:
    """For each (benchmark, forget set): a table of methods × columns as 'mean ± std' strings.

    The oracle (retrain) comes first and the original model second, then methods in
    the order they first appear. `ok` counts the seeds that finished out of those run;
    failed seeds are left out of the means.
    """
    frame = pd.concat([records_frame(records), pd.DataFrame(_reference_rows(records))], ignore_index=True)
    tables: dict[tuple[str, str], pd.DataFrame] = {}
    for (benchmark, forget), part in frame.groupby(["benchmark", "forget"], sort=False):
        methods = list(dict.fromkeys(part["method"]))
        order = [m for m in (ORACLE, ORIGINAL) if m in methods] + [m for m in methods if m not in (ORACLE, ORIGINAL)]
        rows = []
        for method in order:
            runs = part[part["method"] == method]
            ok = runs[runs["status"] == "ok"]
            row = {"method": method}
            for col in columns:
                row[col] = _mean_std(ok[col]) if col in ok else "—"
            row["ok"] = f"{len(ok)}/{len(runs)}"
            rows.append(row)
        tables[(benchmark, forget)] = pd.DataFrame(rows).set_index("method")
    return tables


def format_tables(tables: dict[tuple[str, str], pd.DataFrame]) -> str:
    """Plain-text rendering of summary tables, each under a one-line caption."""
    blocks = []
    for (benchmark, forget), table in tables.items():
        caption = f"{benchmark} · forget {forget} · mean ± std over seeds (UA = 100 − forget accuracy, %)"
        blocks.append(caption + "\n" + table.reset_index().to_string(index=False))
    return "\n\n".join(blocks)
