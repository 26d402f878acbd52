"""Executors: a process pool and Ray (a local instance and a two-node cluster on loopback) give the serial run's
records and table; a worker that dies is a failed record; a cached model is built once by concurrent builders.

The grids run a small copy of the digits benchmark (4 training epochs, the accuracy and MIA-Efficacy metrics),
so that each run costs about its workers' start-up: what is tested is how cells travel, not the benchmark.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from unlearn.cli import main
from unlearn.results import read_record

METHODS = "retrain,finetune,random-label"
KILLER = "plugin_methods:KillsItsProcess"
FORGETS = "class:3,random:0.1"

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is not installed (pip install -e ".[ray]")')


def grid(mini: Path, workdir: Path, cache: Path, methods: str = METHODS, *extra: str) -> list[str]:
    return ["run", "--benchmark", str(mini), "--methods", methods, "--forget", FORGETS, "--seeds", "0",
            "--workdir", str(workdir), "--cache-dir", str(cache), "--no-progress", "--threads", "1", *extra]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def records(workdir: Path) -> dict[str, Any]:
    """Every record under WORKDIR/data/runs by relative path, without run time and environment (wall time, and
    the git state of a tree others may be editing)."""
    root = workdir / "data" / "runs"
    return {str(p.relative_to(root)): read_record(p).model_dump(exclude={"run_time_s", "env"})
            for p in sorted(root.rglob("*.json"))}


def without_run_time(table: str, drop: str | None = None) -> str:
    """The printed tables without the run-time column "RTE (s)" (wall time), and without the rows of `drop`."""
    lines = []
    for block in table.strip().split("\n\n"):
        caption, header, *rows = block.splitlines()
        end = header.index("RTE (s)") + len("RTE (s)")
        start = header.rindex("Avg. Gap", 0, end) + len("Avg. Gap")
        table_lines = [line for line in (header, *rows) if len(line) == len(header)]  # to_string pads every row
        notes = [line for line in rows if len(line) != len(header)]
        cut = [line[:start] + line[end:] for line in table_lines if drop is None or drop not in line.split()]
        lines += [caption, *(" ".join(line.split()) for line in cut), *notes, ""]  # column widths depend on the rows
    return "\n".join(lines)


@pytest.fixture(scope="module")
def serial(mini: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """The serial run's records and printed table (it also caches the grid's models in the session's cache)."""
    workdir = tmp_path_factory.mktemp("serial")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(grid(mini, workdir, shared_cache)) == 0
    return records(workdir), out.getvalue()


def assert_same_as_serial(serial: tuple[dict, str], workdir: Path, out: str, killed: bool = False) -> None:
    """The run's records and table equal the serial run's; with `killed`, besides the KillsItsProcess cells."""
    theirs, table = serial
    ours = records(workdir)
    if killed:
        ours = {name: r for name, r in ours.items() if r["method"] != KILLER}
    assert list(ours) == list(theirs)
    for name, record in ours.items():
        assert record == theirs[name], name
    assert without_run_time(out, KILLER if killed else None) == without_run_time(table)


def test_a_process_pool_gives_the_serial_records_and_table(mini, serial, shared_cache, tmp_path, capsys):
    code, out, err = run(capsys, *grid(mini, tmp_path, shared_cache), "--executor", "process", "--jobs", "2")
    assert code == 0, err
    assert "a pool of 2 worker processes" in err and "6 cells run, 0 reused, 0 failed" in err
    assert "2 units of work ran in 2 workers" in err
    assert_same_as_serial(serial, tmp_path, out)


def test_a_worker_that_dies_is_a_failed_record_and_the_rest_of_the_grid_completes(mini, serial, tmp_path, capsys):
    """KillsItsProcess ends its worker (os._exit) in the middle of each group, on a fresh cache: both workers need
    the seed's original model at once (one builds it, the other waits for the lock, then loads it)."""
    methods = f"retrain,{KILLER},finetune,random-label"
    code, out, err = run(capsys, *grid(mini, tmp_path, tmp_path / "fresh-cache", methods),
                         "--executor", "process", "--jobs", "2")
    assert code == 0, err
    assert "8 cells run, 0 reused, 2 failed" in err and "2 worker deaths" in err
    killed = [read_record(p) for p in (tmp_path / "data" / "runs").rglob("*.json") if "KillsItsProcess" in str(p)]
    assert len(killed) == 2
    for record in killed:
        assert record.status == "failed" and record.metrics == {}
        assert record.error == "worker process died while running this cell: exit code 3"
        assert record.oracle_metrics and record.models["oracle"]  # the group was ready: its scores are recorded
    assert_same_as_serial(serial, tmp_path, out, killed=True)
    assert not list((tmp_path / "fresh-cache").rglob("*.lock")) and not list((tmp_path / "fresh-cache").rglob("*.tmp"))


def _race(cache_dir: str, calls: str, barrier: Any, results: Any) -> None:
    """A process that builds the cache entry `race` (0.5 s, logged in `calls`) unless it is there."""
    import torch

    from unlearn.cache import ModelCache

    torch.set_num_threads(1)

    def build() -> torch.nn.Module:
        with open(calls, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        torch.manual_seed(0)
        return torch.nn.Linear(4, 2)

    barrier.wait()
    cached = ModelCache(Path(cache_dir)).get_or_build("original", {"key": "race"}, build, lambda: torch.nn.Linear(4, 2))
    results.put((cached.hit, cached.model.weight.tolist()))


def test_concurrent_builders_of_one_cache_key_build_it_once(tmp_path):
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    barrier, results = context.Barrier(3), context.Queue()
    calls = tmp_path / "calls"
    processes = [context.Process(target=_race, args=(str(tmp_path / "cache"), str(calls), barrier, results))
                 for _ in range(2)]
    for p in processes:
        p.start()
    barrier.wait(timeout=120)  # both processes are up and about to call get_or_build
    got = [results.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(timeout=30)
    assert [p.exitcode for p in processes] == [0, 0]
    assert len(calls.read_text().splitlines()) == 1  # built once...
    assert sorted(hit for hit, _ in got) == [False, True]  # ...and loaded by the process that waited
    assert got[0][1] == got[1][1]
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 1
    assert not list((tmp_path / "cache").rglob("*.lock"))  # the lock file is removed with the lock


def test_concurrent_builders_of_overlapping_banks_build_each_model_once_without_deadlock(tmp_path):
    """Two builders of one bank of models (keys given in opposite orders, as two workers could) under the cache's
    per-key file locks: every model is built once, the second builder loads them, and neither waits forever."""
    import threading

    from torch import nn

    from unlearn.cache import ModelCache

    cache = ModelCache(tmp_path / "cache")
    keys = [{"role": "bank", "seed": s} for s in range(3)]
    built: list[int] = []
    inside = threading.Barrier(2, timeout=60)

    def build(seeds: list[int]) -> Any:
        def making(missing: list[int]) -> list[nn.Module]:
            built.extend(seeds[i] for i in missing)
            time.sleep(0.3)  # the other builder is waiting on a lock meanwhile
            return [nn.Linear(2, 2) for _ in missing]
        return making

    results: dict[str, list] = {}

    def run(name: str, order: list[int]) -> None:
        inside.wait()
        templates = [lambda: nn.Linear(2, 2)] * 3
        got = cache.get_or_build_many("unlearned", [keys[s] for s in order], build(order), templates)
        results[name] = [(s, m.hit) for s, m in zip(order, got, strict=True)]

    threads = [threading.Thread(target=run, args=(n, o)) for n, o in (("up", [0, 1, 2]), ("down", [2, 1, 0]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert sorted(built) == [0, 1, 2]  # each model built once, by one of them
    hits = sorted(hit for got in results.values() for _, hit in got)
    assert hits == [False] * 3 + [True] * 3  # the other loaded all three
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 3


def test_bad_executor_options_are_one_line_exit_2(mini, tmp_path, capsys):
    for args, message in [
        (["--executor", "nope"], "unknown executor 'nope'; use serial, process, ray"),
        (["--executor", "proces"], "(did you mean process?)"),
        (["--executor", "process", "--jobs", "0"], "--jobs must be at least 1, not 0"),
        (["--jobs", "2"], "--jobs sets the workers of --executor process or ray"),
        (["--executor", "process", "--address", "127.0.0.1:1"], "--address names a Ray cluster"),
    ]:
        code, out, err = run(capsys, *grid(mini, tmp_path, tmp_path / "cache"), *args)
        assert code == 2 and out == ""
        assert err.startswith("unlearn: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "data").exists() and not (tmp_path / "cache").exists()


def test_the_ray_executor_without_ray_is_one_line_exit_2(mini, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    code, out, err = run(capsys, *grid(mini, tmp_path, tmp_path / "cache"), "--executor", "ray")
    assert code == 2 and err == 'unlearn: error: --executor ray needs Ray: pip install -e ".[ray]" (or pip install ' \
                                '"ray>=2.9")\n'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_ray
def test_a_ray_address_where_nothing_answers_is_one_line_exit_2(mini, tmp_path, capsys):
    address = f"127.0.0.1:{_free_port()}"
    code, out, err = run(capsys, *grid(mini, tmp_path, tmp_path / "cache"), "--executor", "ray", "--address", address)
    assert code == 2 and err.startswith(f"unlearn: error: nothing answers at --address {address}")
    assert err.count("\n") == 1 and not (tmp_path / "data").exists()


@needs_ray
def test_ray_on_a_local_instance_gives_the_serial_table_and_a_dead_worker_is_a_failed_record(
    mini, serial, shared_cache, tmp_path, capsys
):
    """The run starts a local Ray instance of 2 CPUs; KillsItsProcess, last in each group, ends its Ray worker."""
    code, out, err = run(capsys, *grid(mini, tmp_path, shared_cache, f"{METHODS},{KILLER}"),
                         "--executor", "ray", "--jobs", "2")
    assert code == 0, err
    assert "Ray tasks on a local instance of 2 CPUs" in err
    assert "8 cells run, 0 reused, 2 failed" in err and "2 workers on 1 node, 2 worker deaths" in err, err
    killed = [read_record(p) for p in (tmp_path / "data" / "runs").rglob("*.json") if "KillsItsProcess" in str(p)]
    assert len(killed) == 2
    assert all(r.status == "failed" and r.error.startswith("Ray worker died while running this cell") for r in killed)
    assert_same_as_serial(serial, tmp_path, out, killed=True)  # stdout holds the table alone


needs_submitit = pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                    reason='submitit is not installed (pip install -e ".[slurm]")')


@needs_submitit
def test_slurm_jobs_through_submitit_give_the_serial_table_and_a_dead_job_keeps_its_records(
    mini, serial, shared_cache, tmp_path, capsys
):
    """submitit's local cluster runs the SLURM executor's jobs as processes, with SLURM's job files and result
    pickles; KillsItsProcess, last in each group, ends its job after three records are written."""
    code, out, err = run(capsys, *grid(mini, tmp_path, shared_cache, f"{METHODS},{KILLER}"),
                         "--executor", "slurm", "--slurm", "cluster=local", "--slurm", "timeout_min=20", "--jobs", "2")
    assert code == 0, err
    assert "local processes through submitit, 2 at a time" in err
    assert "8 cells run, 0 reused, 2 failed" in err and "2 worker deaths" in err, err
    killed = [read_record(p) for p in (tmp_path / "data" / "runs").rglob("*.json") if "KillsItsProcess" in str(p)]
    assert len(killed) == 2
    for record in killed:
        assert record.status == "failed" and record.error.startswith("SLURM job died while running this cell: job ")
        assert record.oracle_metrics and record.models["oracle"]  # taken from the records the job wrote
    assert_same_as_serial(serial, tmp_path, out, killed=True)
    assert list((tmp_path / "data" / "slurm-jobs").glob("*/*_log.err"))  # submitit's job logs, kept for the user


@needs_submitit
def test_bad_slurm_options_are_one_line_exit_2(mini, tmp_path, capsys):
    args = grid(mini, tmp_path, tmp_path / "cache")
    code, _, err = run(capsys, *args, "--executor", "slurm", "--slurm", "cluster=local", "--slurm", "queue=gpu")
    assert code == 2 and err.startswith("unlearn: error: --slurm: Parameter 'queue' need to be prefixed"), err
    assert err.count("\n") == 1 and not (tmp_path / "data").exists()
    code, _, err = run(capsys, *args, "--executor", "slurm")  # no SLURM on this machine
    assert code == 2 and err.startswith("unlearn: error: --executor slurm: Could not detect"), err
    assert err.endswith("(--slurm cluster=local runs the jobs as local processes)\n")
    code, _, err = run(capsys, *args, "--executor", "process", "--slurm", "slurm_partition=gpu")
    assert code == 2 and err == "unlearn: error: --slurm sets options of SLURM jobs; use it with --executor slurm, " \
                                "not process\n"
    code, _, err = run(capsys, *args, "--executor", "slurm", "--slurm", "cluster=pbs")
    assert code == 2 and err == "unlearn: error: --slurm cluster=pbs: use slurm (the default) or local\n"


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own process group, once it says the node runs."""
    ray = Path(sys.executable).with_name("ray")
    command = [str(ray) if ray.exists() else "ray", "start", *args, "--num-cpus=1", "--node-ip-address=127.0.0.1",
               "--block"]
    with open(log, "w") as out:
        node = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text():
        if node.poll() is not None or time.monotonic() > deadline:
            _stop(node)
            pytest.fail(f"ray start {' '.join(args)} failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return node


def _stop(node: subprocess.Popen) -> None:
    """Kill the node's process group: `ray start --block`, and the GCS, raylet and workers it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)
    node.wait(timeout=30)


@needs_ray
def test_ray_on_a_two_node_cluster_on_loopback_gives_the_serial_table(mini, serial, shared_cache, tmp_path):
    """A head and a second node of 1 CPU each on 127.0.0.1 (token authentication with a token of the test's own);
    `unlearn run --executor ray --address` runs the grid's two groups, one per node."""
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_ray_start(["--head", f"--port={port}", "--include-dashboard=false"], env, tmp_path / "head.log"))
        nodes.append(_ray_start([f"--address=127.0.0.1:{port}"], env, tmp_path / "node.log"))
        done = subprocess.run([sys.executable, "-m", "unlearn", *grid(mini, tmp_path, shared_cache),
                               "--executor", "ray", "--address", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, env=env, timeout=300)
    finally:
        for node in reversed(nodes):
            _stop(node)
    assert done.returncode == 0, done.stderr
    assert f"Ray tasks on the cluster at 127.0.0.1:{port}" in done.stderr
    assert "6 cells run, 0 reused, 0 failed" in done.stderr and "on 2 nodes" in done.stderr, done.stderr
    assert_same_as_serial(serial, tmp_path, done.stdout)


def test_units_are_split_only_to_keep_workers_busy_and_ordered_to_spread_the_seeds():
    from unlearn.executors import WorkUnit, split_units
    from unlearn.forget import ForgetSpec

    def unit(forget: str, seed: int, cells: int) -> WorkUnit:
        return WorkUnit(ForgetSpec.parse(forget), seed, None, tuple(range(cells)), tuple(range(cells)))  # type: ignore

    grid = [unit(f, s, 8) for s in (0, 1) for f in ("random:0.1", "class:3")]  # as Grid.run lists them
    assert [(u.forget.text, u.seed) for u in split_units(grid, 2)] == [
        ("random:0.1", 0), ("random:0.1", 1), ("class:3", 0), ("class:3", 1)]  # 4 units keep 2 workers busy
    three = split_units(grid[:3], 2)  # 3 groups would leave a worker idle: 2 chunks of 4 cells each
    assert [(u.forget.text, u.seed, u.positions) for u in three] == [
        ("random:0.1", 0, (0, 2, 4, 6)), ("random:0.1", 1, (0, 2, 4, 6)), ("class:3", 0, (0, 2, 4, 6)),
        ("random:0.1", 0, (1, 3, 5, 7)), ("random:0.1", 1, (1, 3, 5, 7)), ("class:3", 0, (1, 3, 5, 7))]
    assert len(split_units([unit("class:3", 0, 5)], 2)) == 1  # two chunks of fewer than 4 cells: not worth a setup
    assert split_units(grid, 1) == grid


def test_a_classifier_run_starts_without_diffusers_and_threads_size_every_cpu_pool():
    """Workers and the CLI import the harness, every method and metric: diffusers (~1.5 s) stays out until a
    generator is built, and --threads (cpu_threads) gives numpy/scipy's BLAS pools as many threads as torch."""
    code = (
        "import sys, torch, threadpoolctl\n"
        "import unlearn.cli, unlearn.harness, unlearn.methods, unlearn.metrics, unlearn.executors\n"
        "from unlearn.device import configure_threads\n"
        "assert 'diffusers' not in sys.modules, 'diffusers imported'\n"
        "configure_threads(torch.device('cpu'), 1)\n"
        "pools = [p for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']\n"
        "assert pools and all(p['num_threads'] == 1 for p in pools), pools\n"
        "from unlearn.models.diffusion import build_generator\n"
        "build_generator('ddpm-unet', 1, (8, 8), 10)\n"
        "assert 'diffusers' in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
