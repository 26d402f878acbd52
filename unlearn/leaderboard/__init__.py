"""The leaderboard: summary tables (tables), their statistics (stats), record collection (store), rendering
(render), plots, build."""

from unlearn.leaderboard import continual_table  # noqa: F401  (registers the continual table layout)
from unlearn.leaderboard.stats import Stat
from unlearn.leaderboard.tables import (
    AVG_GAP,
    ORACLE,
    ORIGINAL,
    ROBUST_GAP,
    RUN_TIME,
    Row,
    Table,
    default_columns,
    records_frame,
    summarize,
)
from unlearn.leaderboard.text import format_text

__all__ = [
    "AVG_GAP", "ORACLE", "ORIGINAL", "ROBUST_GAP", "RUN_TIME", "Row", "Stat", "Table",
    "default_columns", "format_text", "records_frame", "summarize",
]
