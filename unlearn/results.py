"""Result records: one JSON file per grid cell, schema-validated on read, written atomically."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from unlearn.atomic import atomic_write_text
from unlearn.collapse import collapse
from unlearn.errors import UserError, validation_problem
from unlearn.names import (
    BENCHMARK_NAME,
    DEVICE,
    FORGET_MAX,
    FORGET_SPEC,
    GIT_COMMIT,
    METHOD_NAME,
    NAME_MAX,
    NOT_INSTALLED,
    PACKAGE,
    TEXT_MAX,
    VERSION,
    name_problem,
    text_problem,
)

SCHEMA = "unlearn.result/1"
ORACLE = "retrain"
"""The method whose output is the oracle every gap is measured to."""
TrackName = Literal["full", "forget-only", "few-shot", "data-free"]
"""The data-access tracks (`unlearn.methods.Track`'s values; a test keeps the two equal)."""
KEY_MAX = 64
"""The longest metric key (a table column)."""


def _matching(pattern: re.Pattern[str], limit: int = NAME_MAX) -> AfterValidator:
    """A validator: the string is a name matching `pattern` of at most `limit` characters (see unlearn.names)."""
    def check(value: str) -> str:
        problem = name_problem(value, pattern, limit)
        if problem is not None:
            raise ValueError(problem)
        return value
    return AfterValidator(check)


def _one_line(limit: int) -> AfterValidator:
    """A validator: the string is one line of at most `limit` characters, without control characters."""
    def check(value: str) -> str:
        problem = text_problem(value, limit)
        if problem is not None:
            raise ValueError(problem)
        return value
    return AfterValidator(check)


BenchmarkName = Annotated[str, _matching(BENCHMARK_NAME)]
MethodName = Annotated[str, _matching(METHOD_NAME)]
ForgetText = Annotated[str, _matching(FORGET_SPEC, FORGET_MAX)]
Version = Annotated[str, AfterValidator(lambda v: v if v == NOT_INSTALLED else _matching(VERSION, 64).func(v))]
"""A version string, or 'not installed'."""
Commit = Annotated[str, _matching(GIT_COMMIT, 64)]
Device = Annotated[str, _matching(DEVICE, 24)]
Package = Annotated[str, _matching(PACKAGE, 64)]
Text = Annotated[str, _one_line(TEXT_MAX)]
MetricKey = Annotated[str, _one_line(KEY_MAX)]
Date = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]


class ForgetInfo(BaseModel):
    """Which forget set a cell used."""

    model_config = ConfigDict(extra="forbid")

    spec: ForgetText
    sha256: str
    size: int
    forgotten_classes: list[int] | None


class Environment(BaseModel):
    """Versions, commit and device that produced a record."""

    model_config = ConfigDict(extra="forbid")

    python: Version
    platform: Text
    packages: dict[Package, Version]
    git_commit: Commit | None
    git_dirty: bool | None
    device: Device
    torch_threads: int


class Submission(BaseModel):
    """Provenance added by `unlearn submit` when a record is copied onto the leaderboard."""

    model_config = ConfigDict(extra="forbid")

    submitted_by: Annotated[str, _one_line(100)]
    submitted_on: Date
    source: Annotated[str, _one_line(1000)]
    checks: list[Text]
    unlearn_version: Version
    unlearn_commit: Commit | None


class ResultRecord(BaseModel):
    """The outcome of one (benchmark, method, forget set, seed) cell.

    `metrics`, `oracle_metrics` and `original_metrics` hold the same metric keys for
    the unlearned model, the retrained oracle and the original model of the cell;
    `gaps` holds |metric − oracle| per gap metric and their mean, 'Avg. Gap', over the gap metrics defined
    for both (`gaps_left_out` names the others; `undefined` the keys each model leaves out). A
    failed cell has status 'failed', the reason in `error` and no metrics or gaps.
    Records on the leaderboard also carry a `submission` block.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_id: Literal["unlearn.result/1"] = Field(SCHEMA, alias="schema")
    status: Literal["ok", "failed"]
    error: str | None = None
    traceback: str | None = None
    benchmark: BenchmarkName
    method: MethodName
    method_origin: Text
    hparams: dict[str, Any]
    track: TrackName
    forget: ForgetInfo
    seed: int
    config: dict[str, Any]
    config_hash: str
    metrics: dict[MetricKey, float]
    metric_info: dict[str, Any] = Field(default_factory=dict)
    """Per metric, what it used: shadow data, split sizes, number of models."""
    method_info: dict[str, Any] = Field(default_factory=dict)
    """What the method reported about its run (`UnlearnRequest.info`), e.g. adapter sparsity."""
    oracle_metrics: dict[MetricKey, float]
    original_metrics: dict[MetricKey, float]
    ideal_oracle_metrics: dict[MetricKey, float] | None = None
    """Corrective cells: the oracle retrained without every manipulated sample (gaps use `oracle_metrics`,
    the realistic oracle retrained without the identified samples only)."""
    gaps: dict[MetricKey, float]
    gaps_left_out: dict[MetricKey, Text] = Field(default_factory=dict)
    """Gap metrics left out of `gaps` and of its Avg. Gap, with why: undefined for the method or the oracle."""
    undefined: dict[Literal["method", "oracle", "original", "ideal_oracle"], dict[MetricKey, Text]] = Field(
        default_factory=dict)
    """Per model, the metric keys left out of its metrics as undefined, with why (a degenerate membership
    attack: docs/metrics.md); the method's are also in `metric_info[<metric>]["undefined"]`."""
    run_time_s: float | None
    run_time_from_cache: bool = False
    artifacts: dict[str, str] = Field(default_factory=dict)
    """Files saved next to this record: name -> file name in the record's directory (a generation cell's
    `samples` grid PNG)."""
    models: dict[str, str]
    env: Environment
    submission: Submission | None = None
    collapsed: str | None = None
    """Why the run collapsed (unlearn.collapse: its retain score below a stated fraction of the original's), or None.
    Records written before the flag existed lack it; `is_collapsed` judges every record from its numbers."""

    @property
    def is_collapsed(self) -> bool:
        """Whether this finished run collapsed, judged from its metrics (the same rule that set `collapsed`)."""
        return self.status == "ok" and collapse(self.metrics, self.original_metrics) is not None

    @classmethod
    def for_cell(
        cls, cell: Any, group: Any, env: dict[str, Any], *, outcome: Any = None, gaps: dict[str, float] | None = None,
        gaps_left_out: dict[str, str] | None = None, undefined: dict[str, str] | None = None,
        error: str | None = None, traceback: str | None = None,
    ) -> ResultRecord:
        """The record of `cell` (an `unlearn.harness.cells.Cell`) in a group summarised by `group` (a `GroupSummary`;
        an empty one when the group was never ready): finished, with its `outcome`, `gaps`, the gap keys left out
        and the method's `undefined` keys; or failed, with the `error` (and the `traceback` when there is one)."""
        base = dict(
            benchmark=cell.config["benchmark"],
            method=cell.method.name,
            method_origin=cell.method.origin,
            hparams=cell.config["hparams"],
            track=cell.config["track"],
            forget=ForgetInfo(spec=cell.forget.text, sha256=cell.manifest.sha256, size=cell.manifest.size,
                              forgotten_classes=cell.manifest.forgotten_classes),
            seed=cell.seed,
            config=cell.config,
            config_hash=cell.config_hash,
            oracle_metrics=group.oracle_metrics,
            original_metrics=group.original_metrics,
            ideal_oracle_metrics=group.ideal_oracle_metrics,
            models=group.models,
            env=env,
        )
        references = {who: keys for who, keys in group.undefined.items() if keys}
        if outcome is None:
            return cls(status="failed", error=error, traceback=traceback, metrics={}, gaps={}, run_time_s=None,
                       undefined=references, **base)
        return cls(
            status="ok",
            metrics=outcome.scores.values,
            metric_info=outcome.scores.info,
            gaps=gaps,
            gaps_left_out=gaps_left_out or {},
            undefined={**({"method": undefined} if undefined else {}), **references},
            run_time_s=outcome.seconds,
            run_time_from_cache=outcome.from_cache,
            method_info=outcome.info,
            artifacts=outcome.artifacts,
            collapsed=collapse(outcome.scores.values, group.original_metrics),
            **base,
        )

    @field_validator("config")
    @classmethod
    def _columns(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The metric lists the leaderboard turns into columns must be lists of short one-line keys."""
        for key in ("metrics", "gap_metrics", "report_metrics"):
            if key in config:
                keys = config[key]
                if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                    raise ValueError(f"config.{key} must be a list of metric names")
                for k in keys:
                    _one_line(KEY_MAX).func(k)
        return config

    @field_validator("artifacts")
    @classmethod
    def _plain_names(cls, values: dict[str, str]) -> dict[str, str]:
        bad = [v for v in values.values() if not re.fullmatch(r"[A-Za-z0-9+_-][A-Za-z0-9.+_-]*", v)]
        if bad:
            raise ValueError(f"artifact names must be plain file names in the record's directory, got {bad}")
        return values

    @field_validator("metrics", "oracle_metrics", "original_metrics", "ideal_oracle_metrics", "gaps")
    @classmethod
    def _finite(cls, values: dict[str, float] | None) -> dict[str, float] | None:
        if values is None:
            return None
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"non-finite values for {bad}")
        return values

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=1) + "\n"


class InvalidRecord(UserError):
    """A file under a results directory that is not a valid result record."""


def slug(text: str) -> str:
    """`text` as a file-name component: runs of other characters than [A-Za-z0-9.+-] become one `_`."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


def record_dir(results_dir: Path, benchmark: str, method: str, forget: str) -> Path:
    """`<results>/<benchmark>/<forget>/<method>`: the folder of a method's records on one forget set.

    Built only from validated names (ValueError otherwise: callers validate user input first), so no
    component can be `..`, empty or hold a separator.
    """
    for value, pattern, limit in ((benchmark, BENCHMARK_NAME, NAME_MAX), (method, METHOD_NAME, NAME_MAX),
                                  (forget, FORGET_SPEC, FORGET_MAX)):
        problem = name_problem(value, pattern, limit)
        if problem is not None:
            raise ValueError(f"cannot build a record path from {value[:100]!r}: it {problem}")
    return Path(results_dir) / slug(benchmark) / slug(forget) / slug(method)


def record_path(results_dir: Path, benchmark: str, method: str, forget: str, seed: int, config_hash: str) -> Path:
    """`<record_dir>/seed<S>-<hash12>.json`: one file per cell config (names validated as `record_dir` does)."""
    folder = record_dir(results_dir, benchmark, method, forget)
    if not re.fullmatch(r"[0-9a-f]{12,64}", config_hash) or not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"cannot build a record path from seed {seed!r} and config hash {config_hash[:70]!r}")
    return folder / f"seed{seed}-{config_hash[:12]}.json"


def write_record(path: Path, record: ResultRecord) -> None:
    """Write a record atomically (a reader sees the old file, the new file, or none).

    Raises StorageError, naming the record's path and the fix, when the disk cannot take it (full, read-only,
    no permission); no partial or temporary file is left.
    """
    atomic_write_text(path, record.to_json(), "result record")


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def read_record(path: Path) -> ResultRecord:
    """Read and validate a record; raise InvalidRecord naming the path and the first problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_no_constant)
        return ResultRecord.model_validate(data)
    except OSError as exc:
        raise InvalidRecord(f"{path}: unreadable ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InvalidRecord(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise InvalidRecord(f"{path}: nested too deeply to be a result record") from None
    except ValidationError as exc:
        raise InvalidRecord(f"{path}: not a valid result record ({validation_problem(exc, 'record')})") from None
