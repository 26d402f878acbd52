"""`unlearn submit`: check a method's records against its benchmark and copy them onto the leaderboard.

A submission is accepted only when, for every submitted method, there is exactly one
record per cell of the benchmark's grid (its forget sets × its seeds), made under the
benchmark's current spec, with one hyperparameter configuration, every cell finished
(unless failures are submitted on purpose), package versions recorded, and scores
taken against the same original model and oracle as the leaderboard's retrain
records. Accepted records get a `submission` provenance block and replace the
method's previous leaderboard records. Nothing is written when a check fails.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from unlearn.atomic import atomic_write
from unlearn.errors import UserError
from unlearn.forget import ForgetSpec
from unlearn.hashing import stable_hash
from unlearn.results import ORACLE, InvalidRecord, ResultRecord, Submission, read_record, record_path, write_record
from unlearn.spec import BenchmarkSpec

REQUIRED_PACKAGES = ("unlearn", "torch")


class SubmissionRefused(UserError):
    """A submission that fails a check; the message says what is missing or wrong."""


@dataclass
class SubmitReport:
    """What was (or, on a dry run, would be) copied and removed."""

    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _listing(items: list[str], limit: int = 6) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _read_all(directory: Path, what: str) -> list[tuple[Path, ResultRecord]]:
    out, invalid = [], []
    for path in sorted(directory.rglob("*.json")) if directory.is_dir() else []:
        try:
            out.append((path, read_record(path)))
        except InvalidRecord as exc:
            invalid.append(str(exc))
    if invalid:
        raise SubmissionRefused(f"invalid records in {what}: {_listing(invalid, 3)}")
    return out


def _matches_spec(record: ResultRecord, spec: BenchmarkSpec) -> bool:
    config = record.config
    try:
        extra = list(ForgetSpec.parse(record.forget.spec).builder.extra_metrics)
    except UserError:
        return False
    return (
        record.benchmark == spec.name
        and config.get("benchmark_model") == spec.model_key()
        and config.get("metrics") == list(dict.fromkeys([*spec.metrics, *extra]))
        and config.get("gap_metrics") == list(spec.gap_metrics)
    )


def _submitter() -> str:
    try:
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ""
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "anonymous"


def submit(
    spec: BenchmarkSpec,
    results_dir: Path,
    leaderboard_results: Path,
    methods: list[str] | None = None,
    *,
    submitted_by: str | None = None,
    allow_failed: bool = False,
    dry_run: bool = False,
) -> SubmitReport:
    """Validate the records of `methods` (default: every method with records) and copy them; see module doc."""
    results_dir, leaderboard_results = Path(results_dir), Path(leaderboard_results)
    found = [(p, r) for p, r in _read_all(results_dir, str(results_dir)) if r.benchmark == spec.name]
    if not found:
        raise SubmissionRefused(f"no records of benchmark {spec.name!r} under {results_dir}")
    current = [(p, r) for p, r in found if _matches_spec(r, spec)]
    stale = len(found) - len(current)
    names = list(dict.fromkeys(methods or sorted({r.method for _, r in current})))
    report = SubmitReport(methods=names)
    if stale:
        report.notes.append(f"ignored {stale} records made under an older version of the {spec.name} spec")

    forgets, seeds = list(dict.fromkeys(spec.grid.forget)), list(dict.fromkeys(spec.grid.seeds))
    grid = {(f, s) for f in forgets for s in seeds}
    by_cell: dict[tuple[str, str, int], list[tuple[Path, ResultRecord]]] = defaultdict(list)
    for path, r in current:
        by_cell[(r.method, r.forget.spec, r.seed)].append((path, r))
    outside = sum(1 for (m, f, s) in by_cell if m in names and (f, s) not in grid)
    if outside:
        report.notes.append(f"left out {outside} cells outside the benchmark's grid")

    problems: list[str] = []
    chosen: list[tuple[Path, ResultRecord]] = []
    for method in names:
        missing, configs = [], set()
        for f in forgets:
            for s in seeds:
                cell = by_cell.get((method, f, s), [])
                if not cell:
                    missing.append(f"{f} seed {s}")
                elif len(cell) > 1:
                    paths = ", ".join(str(p) for p, _ in cell)
                    problems.append(f"{method}: {len(cell)} records for {f} seed {s} ({paths}); keep one")
                else:
                    chosen.append(cell[0])
                    configs.add(stable_hash(cell[0][1].hparams))
        if missing:
            hint = " (older-spec records were ignored)" if stale else ""
            problems.append(f"{method}: missing {', '.join(missing)}{hint}")
        if len(configs) > 1:
            problems.append(f"{method}: hyperparameters differ between cells; submit one configuration")
    for path, r in chosen:
        absent = [p for p in REQUIRED_PACKAGES if r.env.packages.get(p, "not installed") == "not installed"]
        if absent:
            problems.append(f"{path}: versions of {', '.join(absent)} not recorded")
        missing = [name for name in r.artifacts.values() if not (path.parent / name).is_file()]
        if missing:
            problems.append(f"{path}: the file{'s' if len(missing) > 1 else ''} it names ({', '.join(missing)}) "
                            "is missing next to it")
        if r.status == "failed" and not allow_failed:
            problems.append(f"{r.method}: {r.forget.spec} seed {r.seed} failed ({r.error}); rerun with "
                            "`unlearn run --retry-failed`, or pass --allow-failed to submit the failure as a result")
    if problems:
        raise SubmissionRefused(f"submission to {spec.name} refused: {_listing(problems)}")

    on_board = [(p, r) for p, r in _read_all(leaderboard_results, "the leaderboard") if r.benchmark == spec.name]
    oracle_models = {(r.forget.spec, r.seed): r.models for _, r in on_board if r.method == ORACLE}
    oracle_models.update({(r.forget.spec, r.seed): r.models for _, r in chosen if r.method == ORACLE})
    for f, s in sorted(grid):
        if (f, s) not in oracle_models:
            problems.append(f"no oracle for {f} seed {s}")
    for _, r in chosen:
        expected = oracle_models.get((r.forget.spec, r.seed))
        if expected is not None and r.models != expected:
            problems.append(f"{r.method} {r.forget.spec} seed {r.seed} was scored against a different original "
                            "model or oracle than the leaderboard's retrain record")
    if problems:
        hint = " (submit `retrain` records for the grid as well)" if any(p.startswith("no oracle") for p in problems) else ""
        raise SubmissionRefused(f"submission to {spec.name} refused: {_listing(problems)}{hint}")
    if ORACLE in names:
        orphans = sum(1 for _, r in on_board if r.method not in names
                      and oracle_models.get((r.forget.spec, r.seed)) != r.models)
        if orphans:
            report.notes.append(f"{orphans} leaderboard records of other methods now disagree with the new oracle "
                                "and will be skipped until they are resubmitted")

    from unlearn.provenance import package_version, git_commit

    checks = [
        "schema-valid records",
        f"complete grid: {len(forgets)} forget sets x {len(seeds)} seeds per method",
        f"made under the current {spec.name} spec",
        "one hyperparameter configuration per method",
        "same original model and oracle as the leaderboard's retrain records",
        "package versions recorded",
    ]
    stamp = {
        "submitted_by": submitted_by or _submitter(),
        "submitted_on": _dt.date.today().isoformat(),
        "checks": checks,
        "unlearn_version": package_version("unlearn"),
        "unlearn_commit": git_commit(),
    }
    keep = set()
    for path, r in chosen:
        dest = record_path(leaderboard_results, r.benchmark, r.method, r.forget.spec, r.seed, r.config_hash)
        keep.add(dest)
        report.written.append(dest)
        if not dry_run:
            for name in r.artifacts.values():  # files first, so that a record never names a missing file
                data = (path.parent / name).read_bytes()
                atomic_write(dest.parent / name, lambda tmp, data=data: tmp.write_bytes(data))
            source = path.relative_to(results_dir).as_posix()
            write_record(dest, r.model_copy(update={"submission": Submission(source=source, **stamp)}))
    for path, r in on_board:
        if r.method in names and path not in keep:
            report.removed.append(path)
            if not dry_run:
                path.unlink()
                for name in r.artifacts.values():
                    (path.parent / name).unlink(missing_ok=True)
    return report
