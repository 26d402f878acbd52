"""The leaderboard's statistics: intervals, paired tests with Holm's correction, tied ranks, bold, the comparison with
doing nothing, Robust Gap, and the one-seed case, on small hand-made records."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from unlearn.leaderboard import ROBUST_GAP, Stat, format_text, summarize
from unlearn.leaderboard.render import csv_text, markdown_table
from unlearn.leaderboard.stats import holm, paired_p, ranks
from unlearn.provenance import environment
from unlearn.results import ForgetInfo, ResultRecord

ORACLE = {"UA": 100.0, "RA": 100.0}
ORIGINAL = {"UA": 0.0, "RA": 100.0}


def record(method: str, seed: int, scores: dict[str, float], oracle: dict[str, float] = ORACLE,
           original: dict[str, float] = ORIGINAL, gap_metrics: tuple[str, ...] = ("UA", "RA")) -> ResultRecord:
    """An ok record of digits class:3 with the given scores; its gaps are computed as the harness does."""
    gaps = {k: abs(scores[k] - oracle[k]) for k in gap_metrics}
    gaps["Avg. Gap"] = sum(gaps.values()) / len(gap_metrics)
    return ResultRecord(
        status="ok", benchmark="digits", method=method, method_origin="builtin", hparams={}, track="full",
        forget=ForgetInfo(spec="class:3", sha256="0" * 64, size=1, forgotten_classes=[3]), seed=seed,
        config={"gap_metrics": list(gap_metrics)}, config_hash=f"{seed:064x}", metrics=scores,
        oracle_metrics=oracle, original_metrics=original, gaps=gaps, run_time_s=1.0, models={},
        env=environment(torch.device("cpu")),
    )


def grid(ua: dict[str, list[float]]) -> list[ResultRecord]:
    """One record per method and seed, the method's UA on seed s being ua[method][s] (RA as the oracle's)."""
    return [record(m, s, {"UA": v, "RA": 100.0}) for m, values in ua.items() for s, v in enumerate(values)]


def test_intervals_are_scipy_student_t_intervals_over_seeds():
    sample = [91.0, 95.5, 93.0, 97.25]
    stat = Stat.of(sample)
    low, high = scipy_stats.t.interval(0.95, 3, loc=np.mean(sample), scale=scipy_stats.sem(sample))
    assert (stat.ci_low, stat.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert stat.half == pytest.approx(scipy_stats.t.ppf(0.975, 3) * np.std(sample, ddof=1) / 2)
    assert stat.std == pytest.approx(np.std(sample, ddof=1)) and stat.n == 4
    assert stat.text() == f"{np.mean(sample):.2f} ± {(high - low) / 2:.2f}"
    assert Stat.of([5.0, 5.0, 5.0]).text() == "5.00 ± 0.00"
    one = Stat.of([5.0])
    assert (one.half, one.std, one.ci_low, one.text()) == (None, None, None, "5.00")
    assert Stat.of(pd.Series([math.nan])).text() == "—"


def test_paired_test_is_scipys_and_its_degenerate_cases_are_decided():
    a, b = [1.0, 2.5, 2.0, 4.0], [0.5, 2.0, 2.5, 1.0]
    assert paired_p(a, b) == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert paired_p([3.0, 4.0], [3.0, 4.0]) == 1.0  # identical: no evidence of a difference
    assert paired_p([3.0, 4.0, 5.0], [2.0, 3.0, 4.0]) == 0.0  # the same shift on every seed
    assert paired_p([0.1 + 0.2, 1.0], [0.3, 1.0]) == 1.0  # a difference in the last bits of a float is none
    assert paired_p([3.0], [1.0]) is None  # one seed: no test


def test_holm_adjusts_step_down_and_stays_monotone():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == {"a": pytest.approx(0.03), "c": pytest.approx(0.06), "b": pytest.approx(0.06)}
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}


def test_methods_whose_seeds_overlap_share_rank_one_and_are_both_bold():
    records = grid({"retrain": [100.0] * 3, "near": [99.0, 97.0, 98.0], "close": [98.0, 99.0, 96.5],
                    "far": [80.0, 81.0, 79.0]})
    (table,) = summarize(records)
    assert table.headline == "Avg. Gap"  # no probe or relearn scores: no Robust Gap column
    assert ROBUST_GAP not in table.columns
    assert [(r.method, r.rank) for r in table.methods] == [("near", 1), ("close", 1), ("far", 3)]
    for method in ("near", "close"):
        assert {"UA", "Avg. Gap"} <= table.row(method).best
    assert not {"UA", "Avg. Gap"} & table.row("far").best
    assert table.row("far").versus_best.significant and not table.row("close").versus_best.significant
    lines = markdown_table(table).splitlines()
    assert lines[5].startswith("| 1 | close | **97.83 ± ") and lines[6].startswith("| 3 | far | 80.00 ± ")
    assert ranks({"a": {0: 1.0, 1: 2.0}, "b": {0: 1.0, 1: 2.0}}) == {"a": 1, "b": 1}


def test_a_method_the_seeds_cannot_tell_from_doing_nothing_is_flagged_everywhere():
    originals = [{"UA": v, "RA": 100.0} for v in (1.0, 3.0, 2.0)]
    records = [record(m, s, scores, original=originals[s])
               for s in range(3)
               for m, scores in (("retrain", ORACLE), ("good", {"UA": 99.0 + s / 2, "RA": 100.0}),
                                 ("lazy", originals[s]), ("noisy", {"UA": (5.0, 90.0, 1.0)[s], "RA": 100.0}))]
    (table,) = summarize(records)
    assert table.row("original").stats["Avg. Gap"].mean == pytest.approx(49.0)  # (100 − 2) / 2: doing nothing
    assert {r.method: r.verdict for r in table.rows} == {
        "retrain": "—", "original": "—", "good": "better", "lazy": "≈ original", "noisy": "≈ original"}
    assert table.row("lazy").versus_original.p == 1.0  # the same model as the original on every seed
    text = format_text([table])
    assert "≈ original: not significantly different from the original model" in text
    assert [line.split()[1] for line in text.splitlines() if line.endswith("≈ original")] == ["noisy", "lazy"]
    assert "| lazy | " in markdown_table(table) and markdown_table(table).count("| ≈ original |") == 2
    csv = pd.read_csv(io.StringIO(csv_text([table])))
    assert csv.set_index("method").loc["lazy", "vs original"] == "≈ original"
    assert csv.set_index("method").loc["good", "p vs original (Holm)"] < 0.05


def test_one_seed_shows_no_interval_and_says_why():
    (table,) = summarize(grid({"retrain": [100.0], "a": [99.0], "b": [90.0]}))
    assert table.row("a").stats["UA"].text() == "99.00" and table.row("a").stats["UA"].half is None
    assert [(r.method, r.rank, r.verdict) for r in table.methods] == [("a", 1, "—"), ("b", 2, "—")]
    assert table.row("a").best == {"UA", "RA", "Avg. Gap", "RTE (s)"}  # the means decide, at the decimals shown
    assert table.row("b").best == {"RA", "RTE (s)"}
    note = "One seed: no interval and no test; rank and bold follow the means as shown."
    assert note in table.notes() and note in format_text([table]) and note in markdown_table(table)
    assert " ± " not in markdown_table(table)
    (table,) = summarize(grid({"retrain": [100.0, 100.0], "a": [99.0, 98.0], "b": [90.0]}))
    assert "A method with one finished seed has no interval and is compared by its mean as shown." in table.notes()


def test_robust_gap_adds_the_probe_and_relearn_attacks_to_the_gap_metrics():
    oracle = {"UA": 100.0, "RA": 100.0, "Probe-F": 86.0, "Relearn-FA": 100.0}
    original = {"UA": 0.0, "RA": 100.0, "Probe-F": 97.0, "Relearn-FA": 100.0}
    hidden = {"UA": 100.0, "RA": 99.5, "Probe-F": 97.0, "Relearn-FA": 100.0}  # the class hidden behind the head
    deep = {"UA": 99.0, "RA": 99.0, "Probe-F": 88.0, "Relearn-FA": 96.0}
    records = [record(m, s, scores, oracle, original)
               for s in range(3) for m, scores in (("retrain", oracle), ("hidden", hidden), ("deep", deep))]
    (table,) = summarize(records)
    assert table.headline == ROBUST_GAP and table.columns.index(ROBUST_GAP) == table.columns.index("Avg. Gap") + 1
    assert table.row("hidden").stats["Avg. Gap"].mean < table.row("deep").stats["Avg. Gap"].mean
    assert table.row("hidden").stats[ROBUST_GAP].mean == pytest.approx((0 + 0.5 + 11 + 0) / 4)
    assert table.row("deep").stats[ROBUST_GAP].mean == pytest.approx((1 + 1 + 2 + 4) / 4)
    assert table.row("original").stats[ROBUST_GAP].mean == pytest.approx((100 + 0 + 11 + 0) / 4)
    assert table.row("retrain").stats[ROBUST_GAP].mean == 0.0
    assert [r.method for r in table.methods] == ["deep", "hidden"]  # same shift on every seed: deep ranks alone
    assert [r.rank for r in table.methods] == [1, 2]


def test_the_same_records_in_any_order_give_the_same_bytes():
    records = grid({"retrain": [100.0] * 3, "near": [99.0, 97.0, 98.0], "close": [98.0, 99.0, 96.5],
                    "far": [80.0, 81.0, 79.0]})
    first = summarize(records)
    again = summarize(list(reversed(records)))
    assert csv_text(first) == csv_text(again) and format_text(first) == format_text(again)
    assert markdown_table(first[0]) == markdown_table(again[0])


def test_a_collapsed_seed_is_counted_in_every_table_and_kept_in_the_statistics():
    """Issue 24: a run that ends finite but ruined (RA below half the original's) is flagged, not hidden or dropped."""
    records = grid({"steady": [99.0, 98.0, 97.0]}) + [
        record("wobbly", 0, {"UA": 99.0, "RA": 100.0}), record("wobbly", 1, {"UA": 99.0, "RA": 10.8}),
        record("wobbly", 2, {"UA": 98.0, "RA": 99.0}),
    ]
    assert [r.is_collapsed for r in records if r.method == "wobbly"] == [False, True, False]
    table = summarize(records)[0]
    wobbly = table.row("wobbly")
    assert (wobbly.collapsed, wobbly.ok, table.row("steady").collapsed) == (1, 3, 0)
    assert wobbly.stats["RA"].n == 3 and wobbly.stats["RA"].mean == pytest.approx((100.0 + 10.8 + 99.0) / 3)
    assert "| 3/3, 1 collapsed |" in markdown_table(table)
    assert "3/3, 1 collapsed" in format_text([table]) and any("collapsed" in n for n in table.notes())
    csv = pd.read_csv(io.StringIO(csv_text([table]))).set_index("method")
    assert (csv.loc["wobbly", "seeds collapsed"], csv.loc["steady", "seeds collapsed"]) == (1, 0)


@pytest.mark.parametrize(("metrics", "original", "collapsed"), [
    ({"RA": 49.9}, {"RA": 100.0}, True), ({"RA": 50.0}, {"RA": 100.0}, False),
    ({"Acc-r": 11.8, "RA": 90.0}, {"Acc-r": 87.8, "RA": 90.0}, False),  # RA comes first where a record has both
    ({"Acc-r": 11.8}, {"Acc-r": 87.8}, True), ({"Acc-o": 10.0}, {"Acc-o": 68.4}, False),  # no retain score: no call
])
def test_collapse_is_the_retain_score_below_half_the_originals(metrics, original, collapsed):
    from unlearn.collapse import collapse

    assert (collapse(metrics, original) is not None) is collapsed


def test_a_lead_over_the_oracle_on_a_quality_metric_is_marked_and_its_gap_said():
    """Avg. Gap charges |TA − oracle|, so a method better than the oracle on TA pays for it: the cell is marked and a
    note says by how much, while the numbers stay SalUn's. UA beyond the oracle's is no lead (over-forgetting)."""
    oracle = {"UA": 90.0, "TA": 90.0}
    seeds = {"retrain": [oracle] * 3,
             "sharp": [{"UA": 90.0, "TA": t} for t in (95.0, 96.0, 95.5)],  # ahead by 5.5 ± 1.24
             "noisy": [{"UA": 90.0, "TA": t} for t in (99.0, 85.0, 92.0)],  # ahead on average, inside its interval
             "eager": [{"UA": u, "TA": 90.0} for u in (99.0, 98.0, 99.5)]}  # beyond the oracle on UA
    records = [record(m, s, scores, oracle, {"UA": 0.0, "TA": 92.0}, gap_metrics=("UA", "TA"))
               for m, runs in seeds.items() for s, scores in enumerate(runs)]
    (table,) = summarize(records)
    (lead,) = table.row("sharp").leads
    assert (lead.column, lead.lead, lead.gap) == ("TA", pytest.approx(5.5), pytest.approx(5.5))
    assert lead.half == pytest.approx(scipy_stats.t.ppf(0.975, 2) * 0.5 / 3 ** 0.5)
    assert lead.share == pytest.approx(table.row("sharp").stats["Avg. Gap"].mean)  # its whole Avg. Gap is this lead
    assert table.row("noisy").leads == () and table.row("eager").leads == () and table.row("retrain").leads == ()
    assert table.row("original").leads[0].lead == pytest.approx(2.0)  # doing nothing keeps the original's TA
    assert table.row("sharp").stats["Avg. Gap"].mean == pytest.approx(5.5 / 2)  # the number is unchanged
    note = ("‡ sharp beats the oracle on TA by 5.50 (paired 95 % interval ± 1.24): Avg. Gap counts this as a gap of "
            "5.50, adding 2.75 to its Avg. Gap.")
    markdown = markdown_table(table)
    assert note in table.notes() and note in format_text([table]) and note in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| ") and "| sharp |" in line)
    assert row.count("‡") == 1 and "5.50 ‡" not in row and "95.50 ± 1.24 ‡" in row
    csv = pd.read_csv(io.StringIO(csv_text([table])), keep_default_na=False).set_index("method")
    assert csv.loc["sharp", "beats oracle"] == "TA" and csv.loc["noisy", "beats oracle"] == ""
