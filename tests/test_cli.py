"""The `unlearn` command as a user meets it: the grid, its records, reruns and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import files_under

from unlearn.cli import main
from unlearn.results import read_record

GRID = ["--methods", "retrain,finetune,grad-ascent,random-label", "--forget", "class:3", "--seeds", "0"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_writes_one_record_per_cell_and_prints_the_table(tmp_path, shared_cache, capsys):
    code, out, err = run(capsys, "run", *GRID, "--workdir", str(tmp_path), "--cache-dir", str(shared_cache),
                         "--no-progress")
    assert code == 0, err
    records = sorted((tmp_path / "data" / "runs" / "digits").rglob("*.json"))
    assert len(records) == 4
    for path in records:
        record = read_record(path)
        assert record.status == "ok" and record.env.packages["torch"]
        assert path.name == f"seed0-{record.config_hash[:12]}.json"
        assert record.env.git_commit is None or len(record.env.git_commit) == 40
    lines = out.splitlines()
    assert lines[0].startswith("digits · forget class:3 · mean ± 95 % CI half-width over seeds")
    assert lines[1].split()[:3] == ["rank", "method", "UA"]
    rows = {line.split()[1]: line.split() for line in lines[2:7]}
    assert list(rows)[:2] == ["retrain", "original"]
    assert float(rows["retrain"][2]) > 99.0  # retrain forgets class 3 (UA near 100)...
    assert float(rows["original"][2]) < 1.0  # ...which the original model knows (forget accuracy near 100)
    assert "One seed: no interval and no test; rank and bold follow the means as shown." in lines
    assert "4 cells run, 0 reused, 0 failed" in err


def test_rerun_skips_finished_cells_and_a_resumed_grid_gives_the_same_results(tmp_path, shared_cache, capsys):
    args = ["run", *GRID, "--workdir", str(tmp_path), "--cache-dir", str(shared_cache), "--no-progress"]
    assert run(capsys, *args)[0] == 0
    paths = sorted((tmp_path / "data" / "runs").rglob("*.json"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}

    code, out, err = run(capsys, *args)
    assert code == 0 and "0 cells run, 4 reused" in err
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths} == before

    cache = {p: p.stat().st_mtime_ns for p in shared_cache.rglob("*.safetensors")}
    assert len(cache) >= 2  # the original model and the oracle of class:3, seed 0
    garbled = next(p for p in paths if "random-label" in str(p))
    garbled.write_text("{ not json")
    code, out, err = run(capsys, *args)
    assert code == 0 and "1 cells run, 3 reused" in err and f"{garbled}: not JSON" in err
    assert read_record(garbled).status == "ok"

    lost = next(p for p in paths if "finetune" in str(p))
    old = json.loads(lost.read_text())
    lost.unlink()  # as if the run had died before this cell
    code, out, err = run(capsys, *args)
    assert code == 0 and "1 cells run, 3 reused" in err
    new = json.loads(lost.read_text())
    assert new["metrics"] == old["metrics"] and new["gaps"] == old["gaps"] and new["config_hash"] == old["config_hash"]
    assert {p: p.stat().st_mtime_ns for p in shared_cache.rglob("*.safetensors")} == cache  # models reused


def test_methods_and_benchmarks_list_one_line_each(capsys):
    code, out, _ = run(capsys, "methods")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == sorted(names) and {"retrain", "finetune", "grad-ascent", "random-label"} <= set(names)
    code, out, _ = run(capsys, "benchmarks")
    names = [line.split()[0] for line in out.splitlines()]
    assert code == 0 and names == sorted(names) and {"digits", "digits-vit", "digits-ddpm", "cifar10-ddpm"} <= set(names)


BAD_INPUTS = [
    (["--methods", "finetun"], "did you mean finetune"),
    (["--benchmark", "digit"], "did you mean digits"),
    (["--forget", "random:1.5"], "outside (0, 1)"),
    (["--forget", "random:abc"], "must be a number"),
    (["--forget", "randm:0.1"], "did you mean random"),
    (["--forget", "class:12"], "not a label of digits"),
    (["--forget", "class:three"], "integer label"),
    (["--seeds", "0,x"], "comma-separated integers"),
    (["--hparam", "finetune.lrr=0.1"], "did you mean lr"),
    (["--hparam", "finetune.epochs=abc"], "finetune.epochs"),
    (["--device", "cuda:7"] if not __import__("torch").cuda.is_available() else ["--device", "nonsense"], "device"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    workdir = tmp_path / "work"
    code, out, err = run(capsys, "run", *args, "--workdir", str(workdir), "--no-progress")
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert files_under(workdir) == []


def test_unwritable_output_directory_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = run(capsys, "run", "--workdir", str(blocker / "sub"), "--no-progress")
    assert code == 2 and "is not a directory" in err and err.count("\n") == 1
    assert blocker.read_text() == "not a directory"
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, _, err = run(capsys, "run", "--workdir", str(locked), "--no-progress")
        assert code == 2 and "not writable" in err
        assert files_under(locked) == []


def test_malformed_benchmark_spec_is_refused(tmp_path, capsys):
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: broken\ndescription: x\ndataset: digits\nmodel: small-cnn\n"
                    "train: {epochs: -1, batch_size: 8, lr: 0.1}\ngrid: {methods: [retrain], forget: [class:1], seeds: [0, 1]}\n")
    code, _, err = run(capsys, "run", "--benchmark", str(spec), "--workdir", str(tmp_path / "w"))
    assert code == 2 and "train.epochs" in err and err.count("\n") == 1
    spec.write_text("name: [unclosed\n")
    code, _, err = run(capsys, "run", "--benchmark", str(spec), "--workdir", str(tmp_path / "w"))
    assert code == 2 and "malformed YAML" in err
    assert files_under(tmp_path / "w") == []


def test_console_script_runs_as_a_real_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-m", "unlearn", "run", "--methods", "nope", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("unlearn: error: unknown method 'nope'")
    assert files_under(tmp_path) == []
    helped = subprocess.run([sys.executable, "-m", "unlearn", "run", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0 and "random:F" in helped.stdout and "--data-root" in helped.stdout


def test_print_table_aligns_pads_and_refuses_a_row_of_the_wrong_length(capsys):
    from unlearn.cli.options import print_table

    print_table([("name", "n", "note"), ("a-long-name", 7, "free text")], [-6, 4, None], sep=("", "  "), indent="> ")
    assert capsys.readouterr().out == "> name     n  note\n> a-long-name   7  free text\n"
    print_table(iter([]), [-6, 4])
    assert capsys.readouterr().out == ""  # no rows, not even an empty line
    with pytest.raises(ValueError):
        print_table([("only one cell",)], [-6, 4])


def test_help_and_the_listings_of_specs_never_import_torch():
    """`import unlearn.cli` stays cheap: each command imports what it needs when it runs (a spec's kind is checked
    against the registry of kinds, which imports no kind)."""
    code = ("import sys\nfrom unlearn.cli import main\n"
            "assert main(['benchmarks']) == 0 and main(['run', '--help']) == 0\n"
            "heavy = {'torch', 'sklearn', 'matplotlib', 'unlearn.harness.grid', 'unlearn.generation'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert done.returncode == 0, done.stderr[-2000:]
