"""A workdir as runs find it: records that are not their cell's, lock files left behind, and paths blocked by a file or
a directory.

The grids run the small digits copy of tests/test_executors.py (4 training epochs, two metrics) on the session's
model cache, so a cell costs well under a second once its group's models are cached.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from unlearn.hashing import stable_hash
from unlearn.results import read_record

from test_executors import grid, mini, run  # noqa: F401  (mini is a fixture)


def record_of(workdir: Path, method: str) -> Path:
    """The one record of `method` under WORKDIR/data/runs."""
    [path] = (workdir / "data" / "runs").rglob(f"{method}/*.json")
    return path


def test_a_record_that_is_not_its_cells_is_not_reused_and_the_cell_runs_again(mini, shared_cache, tmp_path, capsys):
    """finetune's record copied to random-label's path, and a record whose config was edited under its old hash:
    both cells run again and their records are theirs; the table has no row of a cell that did not run."""
    args = grid(mini, tmp_path, shared_cache, "finetune,random-label")
    args[args.index("--forget") + 1] = "class:3"
    code, _, err = run(capsys, *args)
    assert code == 0 and "2 cells run, 0 reused, 0 failed" in err, err
    finetune, random_label = record_of(tmp_path, "finetune"), record_of(tmp_path, "random-label")
    foreign = read_record(finetune)
    shutil.copyfile(finetune, random_label)
    edited = json.loads(finetune.read_text())
    edited["config"]["hparams"]["epochs"] = 99  # config_hash left as it was
    finetune.write_text(json.dumps(edited))

    code, out, err = run(capsys, *args)
    assert code == 0 and "2 cells run, 0 reused, 0 failed" in err, err
    assert (f"warning: {random_label} holds finetune class:3 seed 0 (config {foreign.config_hash[:12]}), not this cell; "
            "running the cell again") in err
    assert (f"warning: {finetune} holds a config that does not hash to its config_hash {foreign.config_hash[:12]}; "
            "running the cell again") in err
    for method, path in (("finetune", finetune), ("random-label", random_label)):
        record = read_record(path)
        assert record.method == method and record.config["method"] == method and record.status == "ok"
        assert stable_hash(record.config) == record.config_hash and path.name.endswith(f"{record.config_hash[:12]}.json")
    rows = [line.split()[0] for line in out.splitlines()[2:]]
    assert sorted(rows) == ["finetune", "original", "random-label", "retrain"], out
