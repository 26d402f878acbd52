"""Issue 19: a checkpoint that hides the forgotten class behind the output layer must not top the leaderboard.

`plugin_methods:HeadZero` zeroes the forgotten class's row of the head and sets its bias to −10, touching no
feature. It runs through the real harness (`unlearn run`), its records join a copy of the committed board, and
the tables built from them rank it: near the top under the old headline (Avg. Gap, outputs only), out of the
top three under Robust Gap, whose probe and relearn terms read the features.

"Top three" counts the methods the table puts ahead of it (rank, then mean). On digits class:3 with three seeds
the paired tests separate no method from the best, so every method, this one included, has rank 1 and the
mean orders them: there the test checks the order, not a statistically significant separation. On mnist1d
class:3 with four seeds the cheat is 2nd by Avg. Gap, and significantly worse than the best by Robust Gap
(rank 3, behind the nine methods that share rank 1).
"""

from __future__ import annotations

import pytest

from unlearn.cli import main
from unlearn.leaderboard import AVG_GAP, ROBUST_GAP, RUN_TIME, Table, summarize
from unlearn.leaderboard.store import collect
from unlearn.spec import load_benchmark

CHEAT = "plugin_methods:HeadZero"


def methods_ahead(table: Table, method: str) -> int:
    """How many methods the table puts strictly ahead of `method`: a better rank on its headline, or the same rank
    and a lower mean (a method level with it on both is not ahead, whatever the names)."""
    def key(row):
        return row.rank, row.stats[table.headline].mean

    mine = key(table.row(method))
    return sum(key(r) < mine for r in table.methods)


@pytest.mark.parametrize("bench,forget,seeds,jobs", [  # (a `benchmark` argument is pytest-benchmark's)
    ("digits", "class:3", "0,1,2", []),
    # ("mnist1d", "class:3", "0,1,2,3", ["--executor", "process", "--jobs", "2"]) passes too, but trains 8 models
    # of 150 epochs (about 3 minutes on 2 busy cores), more than the suite's budget allows; docs/metrics.md has its
    # figures.
])
def test_a_head_only_edit_tops_avg_gap_but_not_robust_gap(bench, forget, seeds, jobs, board, shared_cache, tmp_path,
                                                          capsys):
    results = board / "results"
    n = len(seeds.split(","))
    code = main(["run", "--benchmark", bench, "--methods", CHEAT, "--forget", forget, "--seeds", seeds, *jobs,
                 "--workdir", str(tmp_path / "work"), "--cache-dir", str(shared_cache), "--results-dir",
                 str(results), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and f"{n} cells run, 0 reused, 0 failed" in err, err

    collection = collect(results)
    assert collection.skipped == []  # same original models and oracles as the committed records of the cell
    records = [r for r in collection.records if r.benchmark == bench and r.forget.spec == forget]
    cheat = [r for r in records if r.method == CHEAT]
    assert len(cheat) == n and all(r.metrics["UA"] >= r.oracle_metrics["UA"] - 1 for r in cheat)  # outputs fooled
    assert all(r.metrics["Probe-F"] == r.original_metrics["Probe-F"] for r in cheat)  # features untouched

    spec = load_benchmark(bench)
    (old,) = summarize(records, [*spec.gap_metrics, AVG_GAP, RUN_TIME])
    (new,) = summarize(records)
    assert (old.headline, new.headline) == (AVG_GAP, ROBUST_GAP)
    assert methods_ahead(old, CHEAT) < 3, "the exploit: Avg. Gap puts the head-only edit in the top three"
    assert methods_ahead(new, CHEAT) >= 3, "Robust Gap must keep a head-only edit out of the top three"
