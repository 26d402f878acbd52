"""Result records: one JSON file per grid cell, schema-validated on read, written atomically."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from unlearn.atomic import atomic_write_text
from unlearn.errors import UserError, validation_problem

SCHEMA = "unlearn.result/1"
ORACLE = "retrain"
"""The method whose output is the oracle every gap is measured to."""


class ForgetInfo(BaseModel):
    """Which forget set a cell used."""

    model_config = ConfigDict(extra="forbid")

    spec: str
    sha256: str
    size: int
    forgotten_classes: list[int] | None


class Environment(BaseModel):
    """Versions, commit and device that produced a record."""

    model_config = ConfigDict(extra="forbid")

    python: str
    platform: str
    packages: dict[str, str]
    git_commit: str | None
    git_dirty: bool | None
    device: str
    torch_threads: int


class Submission(BaseModel):
    """Provenance added by `unlearn submit` when a record is copied onto the leaderboard."""

    model_config = ConfigDict(extra="forbid")

    submitted_by: str
    submitted_on: str
    source: str
    checks: list[str]
    unlearn_version: str
    unlearn_commit: str | None


class ResultRecord(BaseModel):
    """The outcome of one (benchmark, method, forget set, seed) cell.

    `metrics`, `oracle_metrics` and `original_metrics` hold the same metric keys for
    the unlearned model, the retrained oracle and the original model of the cell;
    `gaps` holds |metric − oracle| per gap metric and their mean, 'Avg. Gap'. A
    failed cell has status 'failed', the reason in `error` and no metrics or gaps.
    Records on the leaderboard also carry a `submission` block.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_id: Literal["unlearn.result/1"] = Field(SCHEMA, alias="schema")
    status: Literal["ok", "failed"]
    error: str | None = None
    traceback: str | None = None
    benchmark: str
    method: str
    method_origin: str
    hparams: dict[str, Any]
    track: str
    forget: ForgetInfo
    seed: int
    config: dict[str, Any]
    config_hash: str
    metrics: dict[str, float]
    metric_info: dict[str, Any] = Field(default_factory=dict)
    """Per metric, what it used: shadow data, split sizes, number of models."""
    method_info: dict[str, Any] = Field(default_factory=dict)
    """What the method reported about its run (`UnlearnRequest.info`), e.g. adapter sparsity."""
    oracle_metrics: dict[str, float]
    original_metrics: dict[str, float]
    ideal_oracle_metrics: dict[str, float] | None = None
    """Corrective cells: the oracle retrained without every manipulated sample (gaps use `oracle_metrics`,
    the realistic oracle retrained without the identified samples only)."""
    gaps: dict[str, float]
    run_time_s: float | None
    run_time_from_cache: bool = False
    artifacts: dict[str, str] = Field(default_factory=dict)
    """Files saved next to this record: name -> file name in the record's directory (a generation cell's
    `samples` grid PNG)."""
    models: dict[str, str]
    env: Environment
    submission: Submission | None = None

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


def record_path(results_dir: Path, benchmark: str, method: str, forget: str, seed: int, config_hash: str) -> Path:
    """`<results>/<benchmark>/<forget>/<method>/seed<S>-<hash12>.json`: one file per cell config."""
    return Path(results_dir) / slug(benchmark) / slug(forget) / slug(method) / f"seed{seed}-{config_hash[:12]}.json"


def write_record(path: Path, record: ResultRecord) -> None:
    """Write a record atomically (a reader sees the old file, the new file, or none).

    Raises StorageError, naming the record's path and the fix, when the disk cannot take it (full, read-only,
    no permission); no partial or temporary file is left.
    """
    atomic_write_text(path, record.to_json(), "result record")


def read_record(path: Path) -> ResultRecord:
    """Read and validate a record; raise InvalidRecord naming the path and the first problem."""
    try:
        return ResultRecord.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        raise InvalidRecord(f"{path}: unreadable ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except ValidationError as exc:
        raise InvalidRecord(f"{path}: not a valid result record ({validation_problem(exc, 'record')})") from None
