"""`unlearn reproduce`: committed leaderboard cells rerun from scratch give their recorded numbers exactly.

COMMITTED lists one cheap committed cell per classification benchmark: a cold rerun trains the cell's original
model and oracle (about 10 s for digits on one core). digits-ddpm is left out: a cold cell of it trains a DDPM
twice, a judge and a method (14 minutes for diffusion-finetune on 2 busy cores); `unlearn reproduce --benchmark
digits-ddpm` checks it.
The records are frozen copies of committed leaderboard cells (tests/fixtures/board), read as a fixed reference and
never written to.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FIXTURE_RESULTS, files_under

from unlearn.cli import main
from unlearn.reproduce import Picked, compare, environment_differences, pick
from unlearn.results import read_record

BOARD = FIXTURE_RESULTS
COMMITTED = [
    ("digits", "digits/class_3/ssd/seed0-d46761529eaa.json"),
    ("mnist1d", "mnist1d/class_3/grad-ascent/seed0-eef890bf6d5a.json"),
]
"""(benchmark, record under the fixture board's results: tests/fixtures/README.md) of the cells the suite reruns: one cheap cell per benchmark (ssd and
grad-ascent train little themselves, so the cell costs its original model and oracle)."""
DDPM = "digits-ddpm/class_3/esd/seed0-3fc5324833e7.json"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in files_under(root)}


@pytest.mark.parametrize(("name", "record"), COMMITTED, ids=[name for name, _ in COMMITTED])
def test_committed_cell_reproduces_exactly(name, record, capsys):
    """The leaderboard's numbers are what this code and the pinned environment (constraints.txt) give."""
    before = snapshot(BOARD)
    code, out, err = run(capsys, "reproduce", "--cell", record, "--results-dir", str(BOARD), "--no-progress")
    assert snapshot(BOARD) == before
    assert code == 0, out + err
    assert f"reproduced   {record}" in out and record.startswith(f"{name}/")
    assert out.splitlines()[-1] == "1 cells: 1 reproduced, 0 differ (tolerance: exact)"


@pytest.fixture(scope="module")
def fresh(mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Records of two small cells, just run with `unlearn run` (a results directory of their own)."""
    work = tmp_path_factory.mktemp("fresh")
    code = main(["run", "--benchmark", str(mini), "--methods", "finetune,grad-ascent", "--forget", "class:3",
                 "--seeds", "0", "--workdir", str(work), "--no-progress"])
    assert code == 0
    return work / "data" / "runs"


def test_a_cell_just_run_reproduces_exactly(fresh, mini, capsys):
    """Same config, seed, versions and threads on CPU: a cold rerun gives every number bit for bit."""
    code, out, err = run(capsys, "reproduce", "--results-dir", str(fresh), "--benchmark", str(mini), "--cells", "2",
                         "--no-progress")
    assert code == 0, out + err
    lines = out.splitlines()
    assert not any(line.startswith("versions differ") for line in lines)  # the records were made here
    assert "comparing every metric, gap, oracle and original metric (timings aside) exactly" in lines
    assert sum(line.startswith("reproduced   digits-mini/class_3/") for line in lines) == 2
    assert lines[-1] == "2 cells: 2 reproduced, 0 differ (tolerance: exact)"


def test_a_changed_number_is_named_and_a_tolerance_covers_it(fresh, mini, tmp_path, capsys):
    source = next(p for p in files_under(fresh) if "finetune" in str(p))
    data = json.loads(source.read_text())
    data["metrics"]["TA"] += 0.25
    data["oracle_metrics"]["RA"] -= 1e-9
    data["run_time_s"] += 100.0  # timings are never compared
    target = tmp_path / "runs" / source.relative_to(fresh)
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(data))
    ta = read_record(source).metrics["TA"]

    code, out, _ = run(capsys, "reproduce", "--results-dir", str(tmp_path / "runs"), "--benchmark", str(mini),
                       "--no-progress")
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("differs"))
    assert f"TA {ta + 0.25:.4g}→{ta:.4g}" in line and "oracle RA " in line and "run_time" not in line
    assert out.splitlines()[-1] == "1 cells: 0 reproduced, 1 differ (tolerance: exact)"

    code, out, _ = run(capsys, "reproduce", "--results-dir", str(tmp_path / "runs"), "--benchmark", str(mini),
                       "--tolerance", "0.3", "--no-progress")
    assert code == 0
    assert "within an absolute tolerance of 0.3 metric points" in out
    assert out.splitlines()[-1] == "1 cells: 1 reproduced, 0 differ (tolerance: absolute, 0.3 metric points)"


def test_a_record_of_an_older_spec_is_not_rerun(fresh, mini, tmp_path, capsys):
    import yaml

    spec = yaml.safe_load(mini.read_text())
    spec["hparams"]["finetune"]["epochs"] = 2
    changed = tmp_path / "digits-mini.yaml"
    changed.write_text(yaml.safe_dump(spec))
    record = next(p for p in files_under(fresh) if "finetune" in str(p))
    code, out, _ = run(capsys, "reproduce", "--results-dir", str(fresh), "--benchmark", str(changed),
                       "--cell", str(record), "--no-progress")
    assert code == 1
    assert "the spec changed since this record (its config differs in hparams)" in out
    assert out.splitlines()[-1] == "1 cells: 0 reproduced, 0 differ, 1 made under an older spec (tolerance: exact)"


def test_the_environment_is_compared_before_the_numbers():
    record = read_record(BOARD / COMMITTED[0][1]).env
    here = {**record.model_dump(), "packages": {**record.packages, "torch": "0.0.1", "numpy": "9.9"},
            "torch_threads": 2, "device": "cuda:0", "git_commit": "0" * 40, "git_dirty": True}
    lines = environment_differences(record, here)
    assert lines[0].startswith(f"versions differ: torch {record.packages['torch']} (record) vs 0.0.1 (here), numpy ")
    assert lines[1:] == [f"cpu threads differ: {record.torch_threads} (record) vs 2 (here)",
                         f"device differs: {record.device} (record) vs cuda:0 (here)",
                         f"code differs: commit {record.git_commit[:12]} (record) vs {'0' * 12} with local changes (here)"]
    assert environment_differences(record, record.model_dump()) == []


def test_timings_are_not_compared():
    record = read_record(BOARD / DDPM)
    timed = record.model_copy(update={
        "metrics": {**record.metrics, "Samples/s": record.metrics["Samples/s"] * 3},
        "oracle_metrics": {**record.oracle_metrics, "Samples/s": 1.0}, "run_time_s": 1.0})
    assert compare(record, timed) == []
    moved = timed.model_copy(update={"gaps": {**record.gaps, "UA": record.gaps["UA"] + 1}})
    assert [d.key for d in compare(record, moved)] == ["gap UA"]
    assert compare(record, moved, tolerance=1.0) == []


def test_the_draw_depends_on_the_pick_seed_only():
    pool = [Picked(Path(f"{i}.json"), f"b/f/m/seed{i}.json", None) for i in range(40)]  # type: ignore[arg-type]
    first = pick(pool, 3, seed=7)
    assert first == pick(list(reversed(pool)), 3, seed=7)
    assert [p.name for p in first] == sorted(p.name for p in first) and len(set(first)) == 3
    assert {tuple(p.name for p in pick(pool, 3, seed=s)) for s in range(5)} != {tuple(p.name for p in first)}
    assert len(pick(pool[:2], 3, seed=0)) == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--tolerance", "-1"], "--tolerance must be a finite number of metric points >= 0, got -1.0"),
    (["--cell", "digits/nowhere.json"], "--cell digits/nowhere.json: no such record"),
    (["--benchmark", "digitz"], "unknown benchmark 'digitz'"),
    (["--cells", "0"], "--cells must be at least 1, got 0"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    code, out, err = run(capsys, "reproduce", "--results-dir", str(BOARD), *args, "--no-progress")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the record's device exists here")
def test_a_record_made_on_a_missing_device_asks_for_one(tmp_path, capsys):
    data = json.loads((BOARD / COMMITTED[0][1]).read_text())
    data["env"]["device"] = "cuda:0"
    target = tmp_path / COMMITTED[0][1]
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(data))
    code, _, err = run(capsys, "reproduce", "--results-dir", str(tmp_path), "--no-progress")
    assert code == 2
    assert "cuda:0 made this record and is not available here; pass --device cpu" in err
