"""Crash safety of `unlearn run`: a killed grid resumes, a failing cell is a record, a full disk stops cleanly."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURE_SPECS, files_under
from safetensors import SafetensorError

import unlearn.atomic as atomic
from unlearn.checkpoints import save_weights
from unlearn.cli import main
from unlearn.errors import StorageError
from unlearn.leaderboard import AVG_GAP, format_text, summarize
from unlearn.results import ResultRecord, read_record
from unlearn.spec import load_benchmark

KILL_METHODS = "retrain,grad-ascent,random-label,boundary-shrink,ssd"
"""Fast digits methods: 5 methods x 2 seeds = 10 cells."""
KILL_CELLS = 10
KILL_AFTER = 3
"""Records on disk before the grid is killed."""


@dataclass(frozen=True)
class Quick:
    """A quick copy of the digits benchmark and the model cache its tests share."""

    spec: Path
    cache: Path


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Quick:
    """digits as it is (data, model, methods, tuned hyperparameters) but trained for 3 epochs and scored with the
    SalUn table's metrics only, so that a grid cell takes a fraction of a second: what is tested here is how a run
    survives crashes, which does not depend on the models' quality."""
    data = yaml.safe_load((FIXTURE_SPECS / "digits.yaml").read_text(encoding="utf-8"))
    data.update(name="digits-quick", description="digits trained for 3 epochs, SalUn metrics (crash-safety tests)",
                metrics=["accuracy", "mia-efficacy"], report_metrics=[])
    data["train"].update(epochs=3, oracle_steps="original")  # 3 epochs: the oracle needs the original's steps to pass
    # the oracle check (refused more than 3 points of RA below the original's)
    root = tmp_path_factory.mktemp("quick-digits")
    (root / "digits-quick.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return Quick(root / "digits-quick.yaml", root / "cache")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def grid(quick: Quick, workdir: Path, methods: str, seeds: str = "0") -> list[str]:
    """`unlearn run` arguments for a class:3 grid of quick digits, one torch thread, no progress bars."""
    return ["run", "--benchmark", str(quick.spec), "--methods", methods, "--forget", "class:3", "--seeds", seeds,
            "--workdir", str(workdir), "--cache-dir", str(quick.cache), "--no-progress", "--threads", "1"]


def records_under(workdir: Path) -> dict[str, ResultRecord]:
    """Every record under WORKDIR/data/runs, read and validated, by path relative to it (sorted)."""
    root = workdir / "data" / "runs"
    return {str(p.relative_to(root)): read_record(p) for p in sorted(root.rglob("*.json"))}


def leftovers(root: Path) -> list[Path]:
    """Files under `root` that are not result records: temporary files of an interrupted write, anything else."""
    return [p for p in files_under(root) if p.suffix != ".json" or p.name.startswith(".")]


def the_error(err: str) -> str:
    """The stderr's one error line, which must be its last, with no traceback before it."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("unlearn: error:")]
    assert len(errors) == 1 and err.rstrip("\n").endswith(errors[0]), err
    return errors[0]


def record_writes(monkeypatch: pytest.MonkeyPatch, results: Path,
                  after: Callable[[list[Path]], None] = lambda written: None,
                  write_for: Callable[[list[Path], Callable[[Path], None]], Callable[[Path], None]] = lambda w, f: f,
                  ) -> list[Path]:
    """Patch the atomic writer so that every record written under `results` is listed (the returned list grows
    during the run); `write_for(written, write)` may replace a record's write callback, `after(written)` runs
    after each record is in place."""
    real = atomic.atomic_write
    written: list[Path] = []

    def patched(path: Path, write: Callable[[Path], None], label: str = "file") -> None:
        if not Path(path).is_relative_to(results):
            return real(path, write, label)
        real(path, write_for(written, write), label)
        written.append(Path(path))
        after(written)

    monkeypatch.setattr(atomic, "atomic_write", patched)
    return written


def test_a_grid_killed_mid_run_resumes_with_only_the_missing_cells_and_matches_an_uninterrupted_run(
    tmp_path, quick, capsys
):
    """SIGKILL a real `python -m unlearn run` process once some of its records exist, rerun the same command, and
    compare with an uninterrupted run in another workdir.

    Every record must be equal except `run_time_s` (and `env`, which holds the git state of a tree other people
    may be editing), and the table rendered from the records must match byte for byte without the run-time
    column "RTE (s)": run time is wall time, so two runs of one cell never agree on it.
    """
    reference = tmp_path / "reference"
    code, out, err = run(capsys, *grid(quick, reference, KILL_METHODS, "0,1"))  # also caches the models
    assert code == 0 and f"{KILL_CELLS} cells run, 0 reused, 0 failed" in err, err

    work = tmp_path / "killed"
    results = work / "data" / "runs"
    command = [sys.executable, "-m", "unlearn", *grid(quick, work, KILL_METHODS, "0,1")]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    log = tmp_path / "killed.stderr"
    with open(log, "w") as stderr:
        grid_process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        deadline = time.monotonic() + 180
        while len(list(results.rglob("*.json"))) < KILL_AFTER:
            if grid_process.poll() is not None:
                pytest.fail(f"the grid ended (exit {grid_process.returncode}) before it could be killed: "
                            f"{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"fewer than {KILL_AFTER} records after 180 s: {log.read_text()}")
            time.sleep(0.01)
        # The kill lands right after a record was renamed into place, well before the next cell's record is due.
        os.kill(grid_process.pid, signal.SIGKILL)
    finally:
        grid_process.kill()
        grid_process.wait(timeout=60)
    assert grid_process.returncode == -signal.SIGKILL

    locks = [p for p in leftovers(work) if p.name.endswith(".json.lock")]
    assert len(locks) <= 1  # the empty lock file of the cell the kill interrupted, if it had started
    assert [p for p in leftovers(work) if p not in locks] == []  # no temporary or partial file anywhere
    survivors = {p: p.read_bytes() for p in sorted(results.rglob("*.json"))}
    killed = len(survivors)
    assert KILL_AFTER <= killed < KILL_CELLS, f"the kill came too late: {killed} of {KILL_CELLS} cells were done"
    assert all(read_record(p).status == "ok" for p in survivors)

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{KILL_CELLS - killed} cells run, {killed} reused, 0 failed" in resumed.stderr, resumed.stderr
    assert {p: p.read_bytes() for p in survivors} == survivors  # finished cells are reused, not rewritten
    assert leftovers(work) == []  # the lock file too is gone

    ours, theirs = records_under(work), records_under(reference)
    assert list(ours) == list(theirs)  # the same cells under the same config hashes
    for name, record in ours.items():
        assert record.model_dump(exclude={"run_time_s", "env"}) == theirs[name].model_dump(
            exclude={"run_time_s", "env"}), name
    spec = load_benchmark(str(quick.spec))
    columns = [*spec.gap_metrics, AVG_GAP]
    table = format_text(summarize(list(ours.values()), columns))
    assert table == format_text(summarize(list(theirs.values()), columns))
    assert "boundary-shrink" in table and "retrain" in table


def test_a_full_disk_while_writing_a_record_stops_the_run_in_one_line_and_a_rerun_finishes_the_grid(
    tmp_path, quick, capsys, monkeypatch
):
    """The third record's write gets half its bytes onto the disk, then ENOSPC: the run stops, nothing is left."""
    results = tmp_path / "data" / "runs"
    args = grid(quick, tmp_path, "retrain,grad-ascent,ssd")
    temporary: list[Path] = []

    def disk_fills_at_the_third(written: list[Path], write: Callable[[Path], None]) -> Callable[[Path], None]:
        if len(written) < 2:
            return write

        def half_then_full(tmp: Path) -> None:
            write(tmp)
            tmp.write_bytes(tmp.read_bytes()[: tmp.stat().st_size // 2])
            temporary.append(tmp)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return half_then_full

    written = record_writes(monkeypatch, results, write_for=disk_fills_at_the_third)
    code, out, err = run(capsys, *args)
    assert code != 0 and out == ""
    assert len(written) == 2 and len(temporary) == 1
    message = the_error(err)
    assert message.startswith("unlearn: error: cannot write result record " + str(results)), message
    failing = Path(message.split("cannot write result record ", 1)[1].split(": ", 1)[0])
    assert failing.parent.name == "ssd" and not failing.exists()
    assert "No space left on device; free disk space, then rerun the same command" in message
    assert not temporary[0].exists() and leftovers(tmp_path / "data") == []
    kept = {p: p.read_bytes() for p in written}
    assert sorted(results.rglob("*.json")) == sorted(kept) and all(read_record(p).status == "ok" for p in kept)

    monkeypatch.undo()
    code, out, err = run(capsys, *args)
    assert code == 0 and "1 cells run, 2 reused, 0 failed" in err, err
    assert read_record(failing).status == "ok"
    assert {p: p.read_bytes() for p in kept} == kept


class _LockedDirectory:
    """`tempfile` as unlearn.atomic sees it, refusing new files in one directory as a read-only directory does
    (for root, whom permission bits do not stop)."""

    def __init__(self, locked: Path):
        self.locked = locked

    def mkstemp(self, *args, dir: str | None = None, **kwargs) -> tuple[int, str]:
        if dir is not None and Path(dir) == self.locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return tempfile.mkstemp(*args, dir=dir, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(tempfile, name)


def _chmod_stops_writes(directory: Path) -> bool:
    """Whether a read-only mode really stops writes in `directory` (not for root)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return False
    except PermissionError:
        return True


def test_a_results_directory_made_unwritable_mid_run_stops_the_run_in_one_line(
    tmp_path, quick, capsys, monkeypatch
):
    """After retrain's seed-0 record, its directory turns read-only (chmod; as root, a patched `mkstemp`)."""
    results = tmp_path / "data" / "runs"
    args = grid(quick, tmp_path, "retrain,ssd", "0,1")
    locked: list[Path] = []

    def lock_after_the_first(written: list[Path]) -> None:
        if len(written) == 1:
            locked.append(written[0].parent)
            locked[0].chmod(0o555)
            if not _chmod_stops_writes(locked[0]):
                monkeypatch.setattr(atomic, "tempfile", _LockedDirectory(locked[0]))

    written = record_writes(monkeypatch, results, after=lock_after_the_first)
    try:
        code, out, err = run(capsys, *args)
    finally:
        for directory in locked:
            directory.chmod(0o755)
    assert code != 0 and out == ""
    assert [p.parent.name for p in written] == ["retrain", "ssd"]
    retrain_dir = locked[0]
    message = the_error(err)
    assert message.startswith(f"unlearn: error: cannot write result record {retrain_dir}{os.sep}seed1-"), message
    assert f"Permission denied; make {retrain_dir} writable, then rerun the same command" in message
    assert leftovers(tmp_path / "data") == []
    kept = {p: p.read_bytes() for p in written}
    assert sorted(results.rglob("*.json")) == sorted(kept) and all(read_record(p).status == "ok" for p in kept)

    monkeypatch.undo()
    code, out, err = run(capsys, *args)
    assert code == 0 and "2 cells run, 2 reused, 0 failed" in err, err
    assert {p: p.read_bytes() for p in kept} == kept


def test_a_method_that_fails_is_a_failed_record_and_retry_failed_reruns_only_that_cell(tmp_path, quick, capsys):
    """A method's own OSError (even 'disk full') is its failure: a failed record, the grid goes on, and
    `--retry-failed` reruns that cell alone once the cause is gone."""
    marker = tmp_path / "transient-failure"
    marker.touch()
    flaky = "plugin_methods:FailWhileMarker"
    args = [*grid(quick, tmp_path / "work", f"retrain,{flaky},ssd"), "--hparam", f"{flaky}.marker={marker}"]
    code, out, err = run(capsys, *args)
    assert code == 0 and "3 cells run, 0 reused, 1 failed" in err, err
    records = records_under(tmp_path / "work")
    failed = [name for name, r in records.items() if r.status == "failed"]
    assert len(failed) == 1 and "FailWhileMarker" in failed[0]
    assert records[failed[0]].error == f"OSError: [Errno {errno.ENOSPC}] No space left on device: '{marker}'"
    paths = sorted((tmp_path / "work" / "data" / "runs").rglob("*.json"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}

    marker.unlink()
    code, out, err = run(capsys, *args)  # without --retry-failed a failed cell counts as done
    assert code == 0 and "0 cells run, 3 reused, 1 failed" in err, err
    code, out, err = run(capsys, *args, "--retry-failed")
    assert code == 0 and "1 cells run, 2 reused, 0 failed" in err, err
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}
    assert [p for p in paths if after[p] != before[p]] == [p for p in paths if "FailWhileMarker" in str(p)]
    assert all(r.status == "ok" for r in records_under(tmp_path / "work").values())


@pytest.mark.parametrize("problem, code, fix", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), errno.ENOSPC, "free disk space"),
    (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), errno.EDQUOT, "free space within your disk quota"),
    (OSError(errno.EROFS, os.strerror(errno.EROFS)), errno.EROFS, "read-only file system"),
    (SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"), errno.ENOSPC,
     "free disk space"),
])
def test_a_checkpoint_the_disk_cannot_take_is_a_storage_error_and_leaves_no_file(tmp_path, monkeypatch, problem,
                                                                                  code, fix):
    """Model checkpoints (the cache's files) go through the same conversion, safetensors' own I/O errors too."""

    def failing_save_file(state: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise problem

    monkeypatch.setattr("unlearn.checkpoints.save_file", failing_save_file)
    path = tmp_path / "cache" / "original" / "abc.safetensors"
    with pytest.raises(StorageError) as caught:
        save_weights(torch.nn.Linear(2, 2), path)
    message = str(caught.value)
    assert message.startswith(f"cannot write model checkpoint {path}: {os.strerror(code)}; ") and fix in message
    assert "\n" not in message and files_under(tmp_path) == []


def test_errors_that_are_not_the_disks_pass_through_unchanged(tmp_path):
    """A bug in a writer is not reported as a full disk, and its temporary file is removed all the same."""

    def buggy(tmp: Path) -> None:
        tmp.write_text("half")
        raise ValueError("cannot serialise")

    def refused(tmp: Path) -> None:
        raise SafetensorError("Error while serializing: unsupported dtype")

    with pytest.raises(ValueError, match="cannot serialise"):
        atomic.atomic_write(tmp_path / "out.json", buggy, "result record")
    with pytest.raises(SafetensorError, match="unsupported dtype"):
        atomic.atomic_write(tmp_path / "m.safetensors", refused, "model checkpoint")
    assert files_under(tmp_path) == []
