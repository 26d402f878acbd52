"""Rerun committed leaderboard cells from scratch and compare their numbers with the records (`unlearn reproduce`).

A cell is picked from the records under a results directory (at random with a seed, or by path). Its benchmark
spec is loaded by the record's benchmark name, and the cell's config is rebuilt from it. If that config's hash is
not the record's, the spec changed since the record was made and the cell is not rerun. Otherwise the cell runs
cold through the harness in a fresh temporary workdir: its forget set is built and its original model, oracle and
method are trained and scored with nothing cached. Every number the record holds is then compared: the metrics,
the gaps, and the oracle's, the original model's and (corrective cells) the ideal oracle's metrics. Wall-clock
figures (the run time and the keys metrics declare as `timings`, e.g. Samples/s) are left out. The comparison is
exact unless a tolerance is given: on CPU, with the record's versions and thread count, a cell gives the same
numbers bit for bit.
"""

from __future__ import annotations

import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unlearn.device import configure_threads, resolve_device
from unlearn.errors import UserError
from unlearn.harness.grid import Grid
from unlearn.harness.kinds import Kind, load_kind
from unlearn.harness.plan import plan_grid
from unlearn.harness.workspace import Workspace
from unlearn.metrics import METRICS
from unlearn.provenance import environment
from unlearn.results import Environment, ResultRecord, read_record
from unlearn.spec import BenchmarkSpec, load_benchmark
from unlearn.transaction import record_files

SECTIONS = (
    ("metrics", ""),
    ("gaps", "gap "),
    ("oracle_metrics", "oracle "),
    ("original_metrics", "original "),
    ("ideal_oracle_metrics", "ideal oracle "),
)
"""The record's blocks of numbers that a rerun must give again, with the prefix that names a block's keys."""
SHOWN = 8
"""Differences listed per cell unless every one is asked for."""


@dataclass(frozen=True)
class Picked:
    """A committed record chosen for a rerun: its file, its name relative to the results directory, its content."""

    path: Path
    name: str
    record: ResultRecord


@dataclass(frozen=True)
class Difference:
    """One number that did not come out as recorded (None: the key is missing on that side)."""

    key: str
    recorded: float | None
    rerun: float | None

    def text(self) -> str:
        if self.recorded is None or self.rerun is None:
            return f"{self.key} {'missing here' if self.rerun is None else 'not in the record'}"
        old, new = number_pair(self.recorded, self.rerun)
        return f"{self.key} {old}→{new}"


@dataclass
class Verdict:
    """What rerunning one cell showed: 'reproduced', 'differs' or 'spec changed', and why."""

    picked: Picked
    outcome: str
    differences: list[Difference] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0

    def line(self, every: bool = False) -> str:
        """One line: the outcome, the record and what differs (the first SHOWN differences unless `every`)."""
        head = f"{self.outcome:<13}{self.picked.name}"
        if self.outcome == "reproduced":
            return f"{head} ({self.seconds:.1f} s)"
        if self.note:
            return f"{head}: {self.note}"
        shown = self.differences if every else self.differences[:SHOWN]
        more = len(self.differences) - len(shown)
        return f"{head}: {', '.join(d.text() for d in shown)}" + (f" (+{more} more)" if more else "")


def number_pair(a: float, b: float) -> tuple[str, str]:
    """`a` and `b` with as few significant digits as tell them apart (up to all 17)."""
    for digits in (4, 6, 8, 10, 12, 14, 17):
        left, right = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if left != right:
            return left, right
    return repr(a), repr(b)


def given_specs(benchmarks: Sequence[str]) -> dict[str, BenchmarkSpec]:
    """The specs named by --benchmark (names or spec files), by benchmark name; UserError for an unknown one."""
    specs = {}
    for name_or_path in benchmarks:
        spec = load_benchmark(name_or_path)
        specs[spec.name] = spec
    return specs


def candidates(results_dir: Path, benchmarks: Sequence[str] | None = None) -> tuple[list[Picked], list[str]]:
    """The records under `results_dir` (of `benchmarks` only, when given), in path order, and the files that are
    not valid records (path: reason). Reads only: no lock or journal is written into the directory."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"no records directory {results_dir} (run from the repository root, or pass --results-dir)")
    found, invalid = [], []
    for path in record_files(results_dir):
        name = path.relative_to(results_dir).as_posix()
        if benchmarks is not None and name.split("/", 1)[0] not in benchmarks:
            continue
        try:
            record = read_record(path)
        except UserError as exc:
            invalid.append(str(exc))
            continue
        if benchmarks is None or record.benchmark in benchmarks:
            found.append(Picked(path, name, record))
    return found, invalid


def pick(pool: Sequence[Picked], count: int, seed: int) -> list[Picked]:
    """`count` records drawn from `pool` with seed `seed` (all of them if it holds fewer), in path order."""
    if count < 1:
        raise UserError(f"--cells must be at least 1, got {count}")
    ordered = sorted(pool, key=lambda p: p.name)
    chosen = random.Random(seed).sample(ordered, min(count, len(ordered)))
    return sorted(chosen, key=lambda p: p.name)


def named(paths: Sequence[Path], results_dir: Path) -> list[Picked]:
    """The records at `paths` (as given, or relative to `results_dir`); UserError for a missing or invalid one."""
    picked = []
    for given in paths:
        path = Path(given) if Path(given).is_file() else Path(results_dir) / given
        if not path.is_file():
            raise UserError(f"--cell {given}: no such record (give its path, or its path under {results_dir})")
        try:
            name = path.resolve().relative_to(Path(results_dir).resolve()).as_posix()
        except ValueError:
            name = str(given)
        picked.append(Picked(path, name, read_record(path)))
    return picked


def timing_keys(record: ResultRecord) -> set[str]:
    """The record's keys that measure wall-clock speed, as its metrics declare them (never compared)."""
    keys: set[str] = set()
    for name in record.config.get("metrics", []):
        try:
            keys.update(METRICS.get(name).timings)
        except UserError:  # a plugin metric not installed here: it declares nothing we can see
            continue
    return keys


def compare(recorded: ResultRecord, rerun: ResultRecord, tolerance: float = 0.0) -> list[Difference]:
    """Every number of `recorded` that `rerun` does not give within `tolerance` (0: exactly), timings aside."""
    skip = timing_keys(recorded)
    out = []
    for block, prefix in SECTIONS:
        old = getattr(recorded, block) or {}
        new = getattr(rerun, block) or {}
        for key in [*old, *(k for k in new if k not in old)]:
            if key in skip:
                continue
            a, b = old.get(key), new.get(key)
            if a is None or b is None or not (a == b or abs(a - b) <= tolerance):
                out.append(Difference(prefix + key, a, b))
    return out


def environment_differences(record: Environment, here: dict[str, Any]) -> list[str]:
    """What differs between the environment a record was made in and this one, one line each: versions first, then
    cpu threads, device, platform and commit."""
    lines = []
    versions = [("python", record.python, here["python"])]
    packages = [*record.packages, *(p for p in here["packages"] if p not in record.packages)]
    versions += [(p, record.packages.get(p, "not recorded"), here["packages"].get(p, "not recorded")) for p in packages]
    changed = [f"{name} {old} (record) vs {new} (here)" for name, old, new in versions if old != new]
    if changed:
        lines.append("versions differ: " + ", ".join(changed))
    if record.torch_threads != here["torch_threads"]:
        lines.append(f"cpu threads differ: {record.torch_threads} (record) vs {here['torch_threads']} (here)")
    if record.device != here["device"]:
        lines.append(f"device differs: {record.device} (record) vs {here['device']} (here)")
    if record.platform != here["platform"]:
        lines.append(f"platform differs: {record.platform} (record) vs {here['platform']} (here)")
    if record.git_commit != here["git_commit"]:
        mine = (here["git_commit"] or "no git checkout")[:12] + (" with local changes" if here["git_dirty"] else "")
        lines.append(f"code differs: commit {(record.git_commit or 'unknown')[:12]} (record) vs {mine} (here)")
    return lines


class Rerunner:
    """Reruns picked cells cold, each in its own temporary workdir under `scratch`, and judges them.

    `device` (None: the device each record names) and `threads` (None: each record's torch thread count) say
    where cells run; `specs` holds benchmark specs given as files, by name, ahead of the benchmark directories.
    """

    def __init__(
        self, scratch: Path, *, device: str | None = None, threads: int | None = None, tolerance: float = 0.0,
        specs: dict[str, BenchmarkSpec] | None = None, data_root: Path | None = None, download: bool = False,
        progress: bool = False,
    ):
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise UserError(f"--tolerance must be a finite number of metric points >= 0, got {tolerance}")
        self.scratch = Path(scratch)
        self.device = device
        self.threads = threads
        self.tolerance = tolerance
        self.specs = dict(specs or {})
        self.data_root = data_root or Path("data/datasets")
        self.download = download
        self.progress = progress
        self._kinds: dict[tuple[str, str], Kind] = {}

    def spec(self, record: ResultRecord) -> BenchmarkSpec:
        """The spec of the record's benchmark, looked up by its name (UserError when none is found)."""
        if record.benchmark not in self.specs:
            self.specs[record.benchmark] = load_benchmark(record.benchmark)
        return self.specs[record.benchmark]

    def where(self, record: ResultRecord) -> tuple[torch.device, int | None]:
        """The device and CPU threads to rerun `record` with; UserError when its device is not here."""
        if self.device is not None:
            return resolve_device(self.device), self.threads
        try:
            device = resolve_device(record.env.device)
        except UserError:
            raise UserError(f"{record.env.device} made this record and is not available here; pass --device cpu "
                            "(and a --tolerance: other devices give other numbers)") from None
        return device, self.threads if self.threads is not None else record.env.torch_threads

    def check(self, picked: Sequence[Picked]) -> None:
        """Raise UserError, before anything runs, for a cell that cannot be rerun here (spec, method or device)."""
        for p in picked:
            try:
                plan_grid(self.spec(p.record), [p.record.method], [p.record.forget.spec], [p.record.seed])
                self.where(p.record)
            except UserError as exc:
                raise UserError(f"{p.name}: {exc}") from None

    def environment(self, record: ResultRecord) -> dict[str, Any]:
        """This environment as a record made here of `record`'s cell would describe it."""
        device, threads = self.where(record)
        configure_threads(device, threads)
        return environment(device)

    def kind(self, spec: BenchmarkSpec, workspace: Workspace, device: torch.device) -> Kind:
        """The benchmark's data on `device`, loaded once per run (models are never shared between cells)."""
        key = (spec.name, str(device))
        if key not in self._kinds:
            self._kinds[key] = load_kind(spec, workspace, device)
        return self._kinds[key]

    def rerun(self, picked: Picked) -> Verdict:
        """Rebuild the cell's config from its spec; if its hash is the record's, run the cell cold and compare."""
        record = picked.record
        spec = self.spec(record)
        device, threads = self.where(record)
        configure_threads(device, threads)
        plan = plan_grid(spec, [record.method], [record.forget.spec], [record.seed])
        start = time.perf_counter()
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cell-", dir=self.scratch) as workdir:
            workspace = Workspace.at(workdir, data_root=self.data_root, download=self.download)
            kind = self.kind(spec, workspace, device)
            kind.check(plan.forgets, plan.methods)
            grid = Grid(plan, kind, workspace, progress=self.progress)
            forget, method = plan.forgets[0], plan.methods[0]
            manifest = grid.models.build_manifest(forget, record.seed)
            cell = grid.cell(method, forget, manifest, record.seed)
            if cell.config_hash != record.config_hash:
                return self.config_changed(picked, cell.config)
            fresh = grid.run().records[0]
        seconds = time.perf_counter() - start
        if (fresh.status, fresh.error) != (record.status, record.error):
            note = f"status {record.status}→{fresh.status}" + (f" ({fresh.error})" if fresh.error else "")
            return Verdict(picked, "differs", note=note, seconds=seconds)
        differences = compare(record, fresh, self.tolerance)
        return Verdict(picked, "differs" if differences else "reproduced", differences, seconds=seconds)

    @staticmethod
    def config_changed(picked: Picked, config: dict[str, Any]) -> Verdict:
        """The verdict on a cell whose config, rebuilt here, does not hash to the record's."""
        recorded = picked.record.config
        keys = [k for k in [*recorded, *(k for k in config if k not in recorded)] if recorded.get(k) != config.get(k)]
        if keys == ["forget_sha256"]:
            note = (f"the forget set, rebuilt here, has sha256 {str(config['forget_sha256'])[:12]}, "
                    f"the record's {str(recorded['forget_sha256'])[:12]}")
            return Verdict(picked, "differs", note=note)
        return Verdict(picked, "spec changed",
                       note=f"the spec changed since this record (its config differs in {', '.join(keys)})")


def reproduce(
    picked: Sequence[Picked], rerunner: Rerunner, say: Callable[[str], None], every: bool = False,
    progress: bool = False,
) -> list[Verdict]:
    """Tell how this environment differs from each record's, then rerun every picked cell and report it."""
    from tqdm.auto import tqdm

    from unlearn.progress import progress_bar

    rerunner.check(picked)
    groups: dict[tuple[str, ...], list[Picked]] = {}
    for p in picked:
        groups.setdefault(tuple(environment_differences(p.record.env, rerunner.environment(p.record))), []).append(p)
    for lines, members in groups.items():
        scope = "" if len(groups) == 1 else f"records of {len(members)} of the cells ({members[0].name}, ...): "
        for line in lines or ("environment: the records' versions, cpu threads and device",):
            say(scope + line)
    tolerance = rerunner.tolerance
    say(f"comparing every metric, gap, oracle and original metric (timings aside) "
        f"{'exactly' if tolerance == 0 else f'within an absolute tolerance of {tolerance:g} metric points'}")
    verdicts = []
    bar = progress_bar(picked, desc="reproduce", unit="cell", disable=not progress)
    for p in bar:
        bar.set_postfix_str(p.name)
        verdict = rerunner.rerun(p)
        verdicts.append(verdict)
        (tqdm.write if progress else say)(verdict.line(every))
    bar.close()
    return verdicts


def summary(verdicts: Sequence[Verdict], tolerance: float) -> str:
    """One line: how many cells reproduced, differed or met a changed spec, and under which tolerance."""
    counts = {o: sum(v.outcome == o for v in verdicts) for o in ("reproduced", "differs", "spec changed")}
    parts = [f"{counts['reproduced']} reproduced", f"{counts['differs']} differ"]
    if counts["spec changed"]:
        parts.append(f"{counts['spec changed']} made under an older spec")
    how = "exact" if tolerance == 0 else f"absolute, {tolerance:g} metric points"
    return f"{len(verdicts)} cells: {', '.join(parts)} (tolerance: {how})"


def command(args: Any) -> int:
    """`unlearn reproduce` (see its --help): pick the cells, rerun them, print a line each and a summary."""
    specs = given_specs([b for group in args.benchmark or [] for b in group])
    pool, invalid = candidates(args.results_dir, list(specs) if specs else None)
    for problem in invalid:
        print(f"unlearn: skipped {problem}", file=sys.stderr)
    picked = named(args.cell, args.results_dir) if args.cell else pick(pool, args.cells, args.pick_seed)
    if not picked:
        where = f" of {', '.join(specs)}" if specs else ""
        raise UserError(f"no records{where} to rerun under {args.results_dir}")
    progress = args.progress
    with tempfile.TemporaryDirectory(prefix="unlearn-reproduce-") as scratch:
        rerunner = Rerunner(args.workdir or Path(scratch), device=args.device, threads=args.threads,
                            tolerance=args.tolerance, specs=specs, data_root=args.data_root, download=args.download,
                            progress=progress)
        verdicts = reproduce(picked, rerunner, print, every=args.verbose, progress=progress)
    print(summary(verdicts, args.tolerance))
    return 0 if all(v.outcome == "reproduced" for v in verdicts) else 1
