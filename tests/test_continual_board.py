"""The leaderboard's continual tables: a board built in tmp_path from hand-made continual records with known
per-task values shows, per forget sequence and method, Acc_f, Acc_r and H after every task as mean ± 95 % interval
over seeds, ranked by H after the last task, with its columns explained."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from unlearn.leaderboard import summarize
from unlearn.leaderboard.build import regenerate
from unlearn.provenance import environment
from unlearn.results import ForgetInfo, ResultRecord, record_path, write_record

BENCHMARK = "seq-bench"  # no spec of this name exists: the board reads nothing of the repo's
TASKS = 3
SEEDS = (0, 1, 2)
# Per method, per task (rows) and seed (columns): accuracy on the task's classes and on the remaining classes.
ACC_F = {
    "retrain": [[0.0, 0.0, 0.0]] * TASKS,
    "keeper": [[40.0, 46.0, 43.0], [38.0, 41.0, 30.0], [35.0, 44.0, 47.0]],
    "forgetter": [[5.0, 2.0, 9.0], [10.0, 4.0, 6.0], [3.0, 8.0, 1.0]],
    "flaky": [[20.0, 25.0, 0.0], [22.0, 18.0, 0.0], [15.0, 19.0, 0.0]],  # seed 2 failed
}
ACC_R = {
    "retrain": [[95.0, 94.0, 96.0], [94.0, 95.0, 93.0], [93.0, 92.0, 95.0]],
    "keeper": [[96.0, 95.0, 97.0], [95.0, 96.0, 94.0], [94.0, 95.0, 93.0]],
    "forgetter": [[90.0, 86.0, 88.0], [85.0, 88.0, 84.0], [83.0, 86.0, 80.0]],
    "flaky": [[91.0, 89.0, 0.0], [90.0, 87.0, 0.0], [88.0, 86.0, 0.0]],
}
ORIGINAL_ACC_F = [[94.0, 95.0, 93.0], [96.0, 94.0, 95.0], [95.0, 93.0, 94.0]]
ORIGINAL_ACC_R = [[95.0, 95.0, 94.0], [95.0, 96.0, 94.0], [94.0, 95.0, 95.0]]
FAILED = {("flaky", 2)}


def per_task(acc_f: list[list[float]], acc_r: list[list[float]], start: list[list[float]], seed: int) -> dict:
    """The `<key>@t` scores of one seed; the task's start model is the original (as for task 1) in every task."""
    out = {}
    for t in range(TASKS):
        f, r = acc_f[t][seed], acc_r[t][seed]
        drop = start[t][seed] - f
        out |= {f"Acc_f@{t + 1}": f, f"Acc_r@{t + 1}": r, f"Drop@{t + 1}": drop,
                f"H@{t + 1}": 2 * drop * r / (drop + r) if drop + r > 0 else 0.0}
    return out


def expected_h(method: str, task: int) -> list[float]:
    return [per_task(ACC_F[method], ACC_R[method], ORIGINAL_ACC_F, s)[f"H@{task}"] for s in SEEDS
            if (method, s) not in FAILED]


def continual_record(method: str, seed: int, forget: str = "continual:3x2", metrics: tuple[str, ...] = (
        "accuracy", "continual")) -> ResultRecord:
    """A record as the harness writes one for a continual cell: the last task's scores plus every task's keys."""
    original = {**per_task(ORIGINAL_ACC_F, ORIGINAL_ACC_R, ORIGINAL_ACC_F, seed), "UA": 5.0, "RA": 95.0}
    oracle = {**per_task(ACC_F["retrain"], ACC_R["retrain"], ORIGINAL_ACC_F, seed), "UA": 100.0, "RA": 95.0}
    ok = (method, seed) not in FAILED
    scores = {**per_task(ACC_F[method], ACC_R[method], ORIGINAL_ACC_F, seed), "UA": 60.0, "RA": 90.0} if ok else {}
    if ok:
        scores |= {k: scores[f"{k}@{TASKS}"] for k in ("Acc_f", "Acc_r", "Drop", "H")}  # the last task, unsuffixed
    gaps = {k: abs(scores[k] - oracle[k]) for k in ("UA", "RA")} if ok else {}
    if ok:
        gaps["Avg. Gap"] = sum(gaps.values()) / 2
    return ResultRecord(
        status="ok" if ok else "failed", error=None if ok else "diverged: loss is nan", benchmark=BENCHMARK,
        method=method, method_origin="builtin", hparams={}, track="full",
        forget=ForgetInfo(spec=forget, sha256="0" * 64, size=6, forgotten_classes=[0, 1, 2, 3, 4, 5]), seed=seed,
        config={"metrics": list(metrics), "gap_metrics": ["UA", "RA"]}, config_hash=f"{seed:064x}",
        metrics=scores, oracle_metrics=oracle, original_metrics=original, gaps=gaps, run_time_s=10.0 + seed,
        models={}, env=environment(torch.device("cpu")),
    )


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard of two continual sequences (the second with `keeper` only), regenerated."""
    root = tmp_path_factory.mktemp("board")
    records = [continual_record(m, s) for m in ACC_F for s in SEEDS]
    records += [continual_record(m, s, "continual:3x2:shots=4") for m in ("retrain", "keeper") for s in SEEDS]
    for r in records:
        write_record(record_path(root / "results", r.benchmark, r.method, r.forget.spec, r.seed, r.config_hash), r)
    regenerate(root)
    return root


def interval(values: list[float]) -> str:
    """'mean ± half-width' of the 95 % Student t interval, computed here from scipy alone."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.2f}"
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=mean, scale=scipy_stats.sem(values))
    return f"{mean:.2f} ± {(high - low) / 2:.2f}"


def markdown_rows(page: str, forget: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the rows (by method name: bold marks and the name's docs link removed) of one sequence's table
    in README.md."""
    section = page.split(f"· forget `{forget}`", 1)[1]
    lines = [line for line in section.split("\n\n", 2)[1].splitlines() if line.startswith("|")]
    cells = [[c.strip().replace("\\", "") for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]

    def name(cell: str) -> str:
        return re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", cell.replace("**", ""))

    return header, {name(row[header.index("Method")]): [c.replace("**", "") for c in row] for row in rows}


def test_each_task_shows_acc_f_acc_r_and_h_as_mean_and_interval_over_seeds(board: Path):
    page = (board / "README.md").read_text(encoding="utf-8")
    header, rows = markdown_rows(page, "continual:3x2")
    columns = [f"{k}@{t}" for t in range(1, TASKS + 1) for k in ("Acc_f", "Acc_r", "H")]
    assert header == ["Rank", "Method", *columns, "RTE (s)", "Seeds", "vs original"]
    assert "UA" not in header and "H" not in header  # the last task's unsuffixed keys are not shown twice
    for method in ("keeper", "forgetter", "flaky"):
        seeds = [s for s in SEEDS if (method, s) not in FAILED]
        for t in range(1, TASKS + 1):
            row = rows[method]
            assert row[header.index(f"Acc_f@{t}")] == interval([ACC_F[method][t - 1][s] for s in seeds])
            assert row[header.index(f"Acc_r@{t}")] == interval([ACC_R[method][t - 1][s] for s in seeds])
            assert row[header.index(f"H@{t}")] == interval(expected_h(method, t))
    assert rows["flaky"][header.index("Seeds")] == "2/3"  # the failed seed is counted, not averaged
    assert rows["original (before unlearning)"][header.index("H@3")] == "0.00 ± 0.00"  # doing nothing forgets nothing
    assert rows["retrain (oracle)"][header.index("Acc_f@2")] == "0.00 ± 0.00"


def test_ranked_by_h_after_the_last_task_higher_is_better(board: Path):
    page = (board / "README.md").read_text(encoding="utf-8")
    header, rows = markdown_rows(page, "continual:3x2")
    means = {m: np.mean(expected_h(m, TASKS)) for m in ("keeper", "forgetter", "flaky")}
    order = [m for m in rows if m in means]
    assert order == sorted(means, key=lambda m: -means[m])  # highest H@3 first
    assert rows[order[0]][header.index("Rank")] == "1"
    assert all(rows[m][header.index("vs original")] == "better" for m in ("keeper", "forgetter"))  # H far above 0

    (table,) = [t for t in summarize([continual_record(m, s) for m in ACC_F for s in SEEDS])]
    assert (table.layout, table.headline) == ("continual", "H@3")
    assert "H@3" in table.row("forgetter").best  # bold: the highest H
    assert "Acc_f@1" in table.row("forgetter").best and "Acc_f@1" not in table.row("keeper").best  # nearest oracle


def test_every_sequence_has_its_table_and_the_csv_holds_the_same_figures(board: Path):
    page = (board / "README.md").read_text(encoding="utf-8")
    header, rows = markdown_rows(page, "continual:3x2:shots=4")
    assert set(rows) == {"retrain (oracle)", "original (before unlearning)", "keeper"}
    frame = pd.read_csv(io.StringIO((board / "leaderboard.csv").read_text(encoding="utf-8")))
    line = frame[(frame["forget"] == "continual:3x2") & (frame["method"] == "keeper")].iloc[0]
    assert line["ranked by"] == "H@3"
    values = expected_h("keeper", 2)
    low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (line["H@2 mean"], line["H@2 ci_low"], line["H@2 ci_high"]) == (
        pytest.approx(np.mean(values), abs=1e-4), pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


def test_the_page_explains_each_column_of_a_continual_table(board: Path):
    page = (board / "README.md").read_text(encoding="utf-8").replace("\\", "")
    for key in ("Acc_f@t", "Acc_r@t", "H@t"):
        assert re.search(rf"{re.escape(key)}: [^.]+\.", page), key
    assert "Ranked by H@3, H after the last task (higher is better" in page


def test_records_without_the_continual_metric_keep_the_gap_layout():
    records = [continual_record(m, s, "class:3", metrics=("accuracy",)) for m in ("retrain", "keeper") for s in SEEDS]
    (table,) = summarize(records)
    assert (table.layout, table.headline) == ("gap", "Avg. Gap")
    assert "Acc_f@1" not in table.columns and "UA" in table.columns


def test_columns_asked_for_follow_the_task_columns_without_repeating_the_last_task():
    """`unlearn run` asks for the gap metrics, the gaps, the forget set's own keys and run time: a continual table
    shows them after its task columns, except the keys it already shows per task."""
    records = [continual_record(m, s) for m in ("retrain", "keeper") for s in SEEDS]
    (table,) = summarize(records, ["UA", "RA", "Avg. Gap", "Robust Gap", "Acc_f", "Drop", "H", "RTE (s)"])
    tasks = [f"{k}@{t}" for t in range(1, TASKS + 1) for k in ("Acc_f", "Acc_r", "H")]
    assert table.columns == (*tasks, "UA", "RA", "Avg. Gap", "RTE (s)")  # no Robust Gap: no record has one
    assert table.row("keeper").stats["Avg. Gap"].mean == pytest.approx(np.mean([abs(60.0 - 100.0), 5.0]))
