"""The leaderboard: regenerated from its records, deterministic, refusing what cannot be compared.

Every test works on a private copy of the frozen fixture board (tests/fixtures/board), never on the checkout's
leaderboard/; CI checks separately that the committed leaderboard is what its records give (`.ci/run`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import FIXTURE_RESULTS as RESULTS
from scipy import stats as scipy_stats

from unlearn.cli import main
from unlearn.leaderboard import summarize
from unlearn.leaderboard.build import regenerate, render, stale_outputs
from unlearn.leaderboard.store import collect
from unlearn.leaderboard.tables import layout_named
from unlearn.results import read_record


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture board, regenerated once: README.md, leaderboard.csv, index.html and plots/ next to results/."""
    root = tmp_path_factory.mktemp("board")
    shutil.copytree(RESULTS, root / "results")
    regenerate(root)
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_fixture_board_is_read_whole_and_failed_cells_stay_failed(board):
    collection = collect(board / "results")
    assert collection.skipped == []
    assert all(r.submission is not None and r.env.git_commit for r in collection.records)
    failed = [r for r in collection.records if r.status != "ok"]
    assert failed and all(r.error.startswith("diverged") for r in failed)
    (table,) = [t for t in summarize(collection.records) if (t.benchmark, t.forget) == ("mnist1d", "class:3")]
    assert table.row("scrub").ok == len(table.row("scrub").values["UA"]) == 2  # the failed seeds are not averaged


def test_regenerating_twice_gives_byte_identical_files(board):
    regenerate(board)
    first = tree(board)
    assert {"README.md", "leaderboard.csv", "index.html"} <= set(first)
    assert any(name.startswith("plots/") and name.endswith(".png") for name in first)
    regenerate(board)
    assert tree(board) == first
    (board / "plots" / "stale-old-plot.png").write_bytes(b"x")
    regenerate(board)
    assert tree(board) == first  # plots no table produces are removed


def test_table_figures_are_the_mean_std_and_interval_of_the_record_files(built):
    """Recompute each cell of the CSV straight from the JSON files, independently of the code under test: the mean,
    the std and the 95 % Student t interval, for the methods and for the original model (doing nothing)."""
    rows = []
    for path in RESULTS.rglob("*.json"):
        data = json.loads(path.read_text())
        if data["status"] != "ok":
            continue  # failed cells are left out of every statistic
        gap_metrics = data["config"]["gap_metrics"]
        columns = (*gap_metrics, "Avg. Gap")
        if "continual" in data["config"]["metrics"]:  # a continual sequence's table: its per-task keys instead
            columns = tuple(k for k in data["metrics"] if re.fullmatch(r"(Acc_f|Acc_r|H)@[0-9]+", k))
        common = {"benchmark": data["benchmark"], "forget": data["forget"]["spec"], "seed": data["seed"],
                  "columns": columns}
        rows.append({**common, "method": data["method"], **data["metrics"], "Avg. Gap": data["gaps"]["Avg. Gap"]})
        original, oracle = data["original_metrics"], data["oracle_metrics"]
        defined = [k for k in gap_metrics if k in original and k in oracle]  # an undefined attack is left out
        doing_nothing = sum(abs(original[k] - oracle[k]) for k in defined) / len(defined)
        rows.append({**common, "method": "original", **original, "Avg. Gap": doing_nothing})
    frame = pd.DataFrame(rows).drop_duplicates(["benchmark", "forget", "method", "seed"])
    csv = pd.read_csv(built / "leaderboard.csv")
    for (benchmark, forget, method), part in frame.groupby(["benchmark", "forget", "method"]):
        line = csv[(csv["benchmark"] == benchmark) & (csv["forget"] == forget) & (csv["method"] == method)].iloc[0]
        for col in part["columns"].iloc[0]:
            values = part[col].dropna().to_numpy() if col in part else []
            if len(values) == 0:  # undefined on every seed: no statistics
                assert pd.isna(line.get(f"{col} mean"))
                continue
            assert line[f"{col} mean"] == pytest.approx(values.mean(), abs=1e-4)
            if len(values) < 2:  # one seed: no spread and no interval
                assert pd.isna(line[f"{col} std"])
                continue
            assert line[f"{col} std"] == pytest.approx(values.std(ddof=1), abs=1e-4)
            if values.std() > 0:
                low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(),
                                                   scale=scipy_stats.sem(values))
            else:
                low = high = values.mean()
            assert (line[f"{col} ci_low"], line[f"{col} ci_high"]) == (pytest.approx(low, abs=1e-4),
                                                                       pytest.approx(high, abs=1e-4))


def test_tables_lead_with_the_references_rank_on_the_headline_and_bold_rank_one(built):
    tables = summarize(collect(RESULTS).records)
    assert {t.benchmark: t.headline for t in tables} == {"digits": "Robust Gap", "digits-ddpm": "Avg. Gap",
                                                            "mnist1d": "Robust Gap", "digits-vit": "H@3"}
    for table in tables:
        roles = [r.role for r in table.rows]
        assert roles[:2] == ["oracle", "original"] and set(roles[2:]) == {"method"}
        ranked = [r for r in table.methods if r.rank is not None]  # a method with no finished seed has no rank
        assert all(r.ok == 0 for r in table.methods if r.rank is None)
        sign = -1 if layout_named(table.layout).direction(table.headline) > 0 else 1  # H: higher is better
        keys = [(r.rank, sign * r.stats[table.headline].mean) for r in ranked]
        assert keys == sorted(keys) and keys[0][0] == 1
        for row in ranked:  # rank 1 exactly where the paired test cannot tell a method from the best
            assert (row.rank == 1) == (row.versus_best is None or not row.versus_best.significant)
            assert row.verdict in ("better", "worse", "≈ original") or row.ok < 2  # one seed or none: no test
        if table.layout == "continual":  # its own tests: tests/test_continual_board.py
            assert table.row("original").stats[table.headline].mean == 0  # doing nothing forgets nothing
            continue
        assert table.row("original").stats["Avg. Gap"].mean > 0  # doing nothing has a gap now
        oracle_ua = table.oracle.values["UA"]
        distance = {r.method: sum(abs(v - oracle_ua[s]) for s, v in r.values["UA"].items()) for r in ranked}
        closest = min(distance, key=lambda m: (distance[m], m))
        bold = {r.method for r in table.rows if "UA" in r.best}
        assert closest in bold and bold <= {r.method for r in table.methods}
        assert not table.rows[0].best and not table.rows[1].best
    readme = (built / "README.md").read_text()
    assert "| — | [retrain](../README.md#methods) (oracle) |" in readme and "**" in readme
    assert "Skipped records" not in readme
    assert "95 % confidence interval" in readme and "Ranked by Robust Gap." in readme


def test_bad_records_are_reported_with_their_path_and_never_merged(board, capsys):
    good = sorted((board / "results").rglob("*.json"))
    before = render(board).outputs["leaderboard.csv"]
    (board / "results" / "digits" / "garbage.json").write_text("{not json")
    (board / "results" / "digits" / "empty.json").write_text("{}")
    duplicate = good[0].with_name("seed0-duplicate.json")
    shutil.copy(good[0], duplicate)
    assert main(["leaderboard", "--dir", str(board)]) == 0
    err = capsys.readouterr().err
    assert f"skipped {board / 'results/digits/garbage.json'}: not JSON" in err
    assert f"skipped {board / 'results/digits/empty.json'}: not a valid result record (status" in err
    assert "duplicate cell" in err and duplicate.name in err
    readme = (board / "README.md").read_text()
    assert "## Skipped records" in readme and "garbage.json" in readme
    # the duplicated cell is dropped (both copies), not averaged twice
    record = read_record(good[0])
    (table,) = [t for t in summarize(collect(board / "results").records)
                if t.forget == record.forget.spec and t.benchmark == record.benchmark]
    assert table.row(record.method).runs == 2
    duplicate.unlink()
    (board / "results" / "digits" / "garbage.json").unlink()
    (board / "results" / "digits" / "empty.json").unlink()
    assert render(board).outputs["leaderboard.csv"] == before


def test_a_record_scored_against_another_oracle_is_skipped(board):
    path = next((board / "results").rglob("finetune/*.json"))
    data = json.loads(path.read_text())
    data["models"]["oracle"] = "0" * 64
    path.write_text(json.dumps(data))
    skipped = collect(board / "results").skipped
    assert [s.reason for s in skipped] == ["scored against a different original model or oracle than the cell's "
                                           "retrain record"]


def test_html_page_is_self_contained(built):
    page = (built / "index.html").read_text()
    tables = summarize(collect(RESULTS).records)
    assert page.count("<table>") == len(tables) + len({t.benchmark for t in tables})  # + a methods table per benchmark
    assert "src=\"data:image/png;base64," in page
    for external in ("src=\"http", "src=\"plots/", "<link", "<script"):  # links out to papers, loads nothing
        assert external not in page


def test_html_page_opens_in_a_headless_browser_without_errors(built, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no headless browser installed (Debian: apt-get install chromium)")
    page = (built / "index.html").read_text()
    probe = """<script>
var errors = [];
window.addEventListener('error', function (e) { errors.push(String(e.message || e.target.src)); }, true);
window.addEventListener('load', function () {
  var broken = Array.from(document.images).filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.body.setAttribute('data-images', document.images.length);
  document.body.setAttribute('data-broken', broken.length);
  document.body.setAttribute('data-errors', errors.length);
});
</script>"""
    probed = tmp_path / "index.html"
    probed.write_text(page.replace("<head>", "<head>" + probe, 1))
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
         probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    plots = len([p for p in (built / "plots").glob("*.png")])
    assert f'data-images="{plots}"' in dom and 'data-broken="0"' in dom and 'data-errors="0"' in dom
    assert '<a href="../README.md#methods">retrain</a> (oracle)' in dom


def test_leaderboard_without_records_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["leaderboard", "--dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no records directory" in err


def test_each_benchmark_table_shows_its_own_metrics_only():
    """The fixture board holds a classification and a generation benchmark: neither table carries the
    other's columns (no empty RA/TA columns next to a generator, no FD next to a classifier)."""
    tables = {t.benchmark: t for t in summarize(collect(RESULTS).records)}
    assert {"digits", "digits-ddpm"} <= set(tables)
    assert "FD" not in tables["digits"].columns and "RA" in tables["digits"].columns
    assert "RA" not in tables["digits-ddpm"].columns and {"UA", "Acc-r", "FD"} <= set(tables["digits-ddpm"].columns)


def test_check_draws_no_plot_but_misses_none(board, monkeypatch):
    """`unlearn leaderboard --check` compares plots by presence, so it draws none (drawing was ~15 s of 37); a
    missing or extra plot is still reported."""
    import unlearn.leaderboard.plots as figures

    regenerate(board)
    monkeypatch.setattr(figures, "png_bytes", lambda fig: pytest.fail("--check drew a plot"))
    assert stale_outputs(board) == []
    plot = sorted((board / "plots").glob("*.png"))[0]
    plot.rename(board / "plots" / "stale-old-plot.png")
    assert stale_outputs(board) == [f"plots/{plot.name}", "plots/stale-old-plot.png"]
