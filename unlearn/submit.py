"""`unlearn submit`: check a method's records against its benchmark and copy them onto the leaderboard.

A submission is accepted only when, for every submitted method, there is exactly one
record per cell of the benchmark's grid (its forget sets × its seeds), made under the
benchmark's current spec, with one hyperparameter configuration, every cell finished
(unless failures are submitted on purpose), package versions recorded, and scores
taken against the same original model and oracle as the leaderboard's retrain
records. Records made with package versions that the board's other records of the benchmark
were not made with are accepted with a warning naming each difference, or refused with
`strict`. Accepted records get a `submission` provenance block and replace the method's
previous leaderboard records. Nothing is written when a check fails.

The replacement is one transaction (unlearn.transaction) under the leaderboard's lock,
which `unlearn leaderboard` honours: a full disk or a kill leaves either the old records
or the new ones, never both, and a kill after the commit point is finished by the next
`submit` or `leaderboard`. A dry run writes nothing of its own; like any reader, it
finishes such an interrupted earlier submission first.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import subprocess
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from unlearn.atomic import atomic_write, storage_error
from unlearn.errors import UserError
from unlearn.forget import ForgetSpec
from unlearn.hashing import stable_hash
from unlearn.names import brief, text_problem
from unlearn.results import ORACLE, InvalidRecord, ResultRecord, Submission, read_record, record_path, write_record
from unlearn.spec import BenchmarkSpec
from unlearn.transaction import board_lock, record_files, transaction

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
    warnings: list[str] = field(default_factory=list)


def _listing(items: list[str], limit: int = 6) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _read_all(directory: Path, what: str) -> list[tuple[Path, ResultRecord]]:
    out, invalid = [], []
    for path in record_files(directory):
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
    strict: bool = False,
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

    # cells are named by the canonical spec (task:compare is task:compare:n=1000 in its records)
    forgets = list(dict.fromkeys(ForgetSpec.parse(text).text for text in spec.grid.forget))
    seeds = list(dict.fromkeys(spec.grid.seeds))
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

    stamp = _stamp(submitted_by, len(forgets), len(seeds), spec.name)
    if not dry_run:
        try:
            leaderboard_results.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, leaderboard_results, "leaderboard results directory") or exc from None
    with board_lock(leaderboard_results):  # the board read, checked and replaced as one transaction
        on_board = [(p, r) for p, r in _read_all(leaderboard_results, "the leaderboard") if r.benchmark == spec.name]
        _check_oracles(spec.name, grid, names, chosen, on_board, report)
        _check_versions(spec.name, chosen, [r for _, r in on_board if r.method not in names], strict, report)
        keep = set()
        for _, r in chosen:
            dest = record_path(leaderboard_results, r.benchmark, r.method, r.forget.spec, r.seed, r.config_hash)
            keep.add(dest)
            report.written.append(dest)
        gone = [(p, r) for p, r in on_board if r.method in names and p not in keep]
        report.removed = [p for p, _ in gone]
        if not dry_run:
            _replace(results_dir, leaderboard_results, zip(chosen, report.written, strict=True), gone, stamp)
    return report


def _check_oracles(benchmark: str, grid: set[tuple[str, int]], names: list[str],
                   chosen: list[tuple[Path, ResultRecord]], on_board: list[tuple[Path, ResultRecord]],
                   report: SubmitReport) -> None:
    """Refuse records scored against another original model or oracle than the board's (or the submitted) ones."""
    problems: list[str] = []
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
        no_oracle = any(p.startswith("no oracle") for p in problems)
        hint = " (submit `retrain` records for the grid as well)" if no_oracle else ""
        raise SubmissionRefused(f"submission to {benchmark} refused: {_listing(problems)}{hint}")
    if ORACLE in names:
        orphans = sum(1 for _, r in on_board if r.method not in names
                      and oracle_models.get((r.forget.spec, r.seed)) != r.models)
        if orphans:
            report.notes.append(f"{orphans} leaderboard records of other methods now disagree with the new oracle "
                                "and will be skipped until they are resubmitted")


def version_differences(submitted: Iterable[ResultRecord], board: Iterable[ResultRecord]) -> list[str]:
    """Each package whose version in `submitted` is not one of the `board` records' versions of it, as
    'torch 2.14.1 (submitted) vs 2.15.0 (board)'; empty when the board has no records."""
    on_board: dict[str, set[str]] = defaultdict(set)
    for r in board:
        for package, version in r.env.packages.items():
            on_board[package].add(version)
    if not on_board:
        return []
    theirs: dict[str, set[str]] = defaultdict(set)
    for r in submitted:
        for package in {*r.env.packages, *on_board}:
            theirs[package].add(r.env.packages.get(package, "not recorded"))
    out = []
    for package in sorted(theirs):
        other = sorted(theirs[package] - on_board.get(package, set()))
        if other:
            board_side = ", ".join(sorted(on_board.get(package, set()))) or "not recorded"
            out.append(f"{package} {', '.join(other)} (submitted) vs {board_side} (board)")
    return out


def _check_versions(benchmark: str, chosen: list[tuple[Path, ResultRecord]], board: list[ResultRecord],
                    strict: bool, report: SubmitReport) -> None:
    """Warn about (or, `strict`, refuse) records made with package versions the board's other records were not."""
    differences = version_differences([r for _, r in chosen], board)
    if not differences:
        return
    if strict:
        raise SubmissionRefused(f"submission to {benchmark} refused (--strict): package versions differ from the "
                                f"leaderboard's: {_listing(differences)}")
    report.warnings.append(f"package versions differ from the leaderboard's {benchmark} records: "
                           f"{_listing(differences)}; its tables will mix them (pass --strict to refuse)")


def _stamp(submitted_by: str | None, forgets: int, seeds: int, benchmark: str) -> dict:
    """The provenance every accepted record gets: who, when, which checks, which unlearn."""
    from unlearn.provenance import git_commit, package_version

    checks = [
        "schema-valid records",
        f"complete grid: {forgets} forget sets x {seeds} seeds per method",
        f"made under the current {benchmark} spec",
        "one hyperparameter configuration per method",
        "same original model and oracle as the leaderboard's retrain records",
        "package versions recorded",
    ]
    by = submitted_by or _submitter()
    problem = text_problem(by, 100)
    if problem is not None:  # it is shown on the leaderboard: one line, and short
        raise SubmissionRefused(f"the submitter's name {brief(by)} {problem}; pass --submitter NAME")
    return {
        "submitted_by": by,
        "submitted_on": _dt.date.today().isoformat(),
        "checks": checks,
        "unlearn_version": package_version("unlearn"),
        "unlearn_commit": git_commit(),
    }


def _replace(results_dir: Path, board: Path, copies: Iterable[tuple[tuple[Path, ResultRecord], Path]],
             gone: list[tuple[Path, ResultRecord]], stamp: dict) -> None:
    """Copy each record (with its files) to its destination and remove `gone` (with theirs) in one transaction."""
    with transaction(board) as tx:
        for (path, r), dest in copies:
            for name in r.artifacts.values():
                data = (path.parent / name).read_bytes()
                target = tx.stage((dest.parent / name).relative_to(board).as_posix())
                atomic_write(target, lambda tmp, data=data: tmp.write_bytes(data))
            source = path.relative_to(results_dir).as_posix()
            record = r.model_copy(update={"submission": Submission(source=source, **stamp)})
            write_record(tx.stage(dest.relative_to(board).as_posix()), record)
        for path, r in gone:
            for file in (path, *(path.parent / name for name in r.artifacts.values())):
                tx.remove(file.relative_to(board).as_posix())
