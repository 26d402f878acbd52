"""The leaderboard: summary tables (tables), record collection (store), rendering (render), plots, build."""

from unlearn.leaderboard.tables import (
    AVG_GAP,
    ORACLE,
    ORIGINAL,
    RUN_TIME,
    Row,
    Stat,
    Table,
    default_columns,
    format_text,
    records_frame,
    summarize,
)

__all__ = [
    "AVG_GAP", "ORACLE", "ORIGINAL", "RUN_TIME", "Row", "Stat", "Table",
    "default_columns", "format_text", "records_frame", "summarize",
]
