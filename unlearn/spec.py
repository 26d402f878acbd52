"""Benchmark specs: validated YAML files under benchmarks/ naming data, model, recipe, grid and tuned values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError, field_validator

from unlearn.errors import UserError, validation_problem
from unlearn.registry import did_you_mean

REPO_ROOT = Path(__file__).resolve().parents[1]


class Recipe(BaseModel):
    """How a benchmark trains its original model (and, identically, the retrained oracle)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: Literal["constant", "cosine"] = "cosine"
    augment: Literal["none", "crop-flip"] = "none"


class GridSpec(BaseModel):
    """The default grid `unlearn run` executes for a benchmark."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    methods: list[str] = Field(min_length=1)
    forget: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)


class ProbeSettings(BaseModel):
    """Linear probes on frozen features: which forgotten samples are held out and how the probe is fitted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    holdout: float = Field(0.5, gt=0.0, lt=1.0)
    """Random forgetting: the fraction of D_f held out of probe-train and scored (class-wise: the
    forgotten classes' test images are scored and all of D_f may train the probe)."""
    shots: PositiveInt | None = None
    """Fit each probe on this many seeded probe-train samples per class (None: all of probe-train, as
    the reference). A full probe saturates on easy data (on digits even the oracle's probe reaches
    100 %), a few-shot probe still tells how directly the features encode a class."""
    repeats: PositiveInt = 5
    """With `shots`: independent draws whose probe accuracies are averaged."""
    C: PositiveFloat = 1.0
    """Inverse L2 strength of the logistic regression."""
    max_iter: PositiveInt = 1000
    min_per_class: PositiveInt = 2
    """Probe-train must hold at least this many samples (and `shots`, if set) of every class scored on."""


class RelearnSettings(BaseModel):
    """The relearn attack: a few steps of fine-tuning on a small part of D_f."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float = Field(0.1, gt=0.0, lt=1.0)
    """Share of D_f the attacker fine-tunes on (at least one sample); the rest is scored."""
    steps: PositiveInt = 20
    lr: PositiveFloat = 0.01
    batch_size: PositiveInt = 16
    tolerance: NonNegativeFloat = 1.0
    """Relearned once forget accuracy is within this many points of the original model's."""


class BankSettings(BaseModel):
    """Banks of models per cell for per-example scores: N retrained oracles, N runs of each method."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(0, ge=0)
    """N; 0 means no banks (per-example metrics then cannot run), otherwise at least 3."""
    mode: Literal["auto", "sequential", "vmap", "process"] = "auto"
    """How oracle banks are trained; `auto` measures and picks the fastest on this model and device."""
    jobs: PositiveInt = 2
    """Workers of the process mode."""
    originals: Literal["shared", "independent"] = "shared"
    """Where a method bank's runs start: all from the cell's original model, as the NeurIPS 2023
    competition does ("shared"; a deterministic method then gives N identical models), or run i from
    an original model trained at seed i ("independent"; the original row is then N trained originals)."""

    @field_validator("size")
    @classmethod
    def _at_least_two(cls, size: int) -> int:
        if size in (1, 2):
            raise ValueError(
                f"a bank of {size} is too small: use N >= 3 models, or 0 for none (at N = 2 the ε score's bins "
                "stop at ceil(ln(N-1)) = 0, and U-LiRA has no leave-one-out fit)"
            )
        return size


class EvaluationSettings(BaseModel):
    """Settings of the evaluations beyond one forward pass: probes, relearning, model banks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: ProbeSettings = ProbeSettings()
    relearn: RelearnSettings = RelearnSettings()
    bank: BankSettings = BankSettings()


class BenchmarkSpec(BaseModel):
    """One benchmark: dataset, model, the original model's training recipe, metrics and default grid.

    `hparams` holds this benchmark's tuned hyperparameters per method; they override
    the method's reference defaults, and `--hparam` overrides them in turn.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    dataset: str
    model: str
    train: Recipe
    eval_batch_size: PositiveInt = 1024
    cpu_threads: PositiveInt | None = None
    """torch intra-op threads when running on CPU (None: torch's default); small models run fastest on 1."""
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "mia-efficacy"])
    gap_metrics: list[str] = Field(default_factory=lambda: ["UA", "RA", "TA", "MIA-Efficacy"])
    report_metrics: list[str] = Field(default_factory=list)
    """Further metric keys the leaderboard shows next to the gap metrics (not part of Avg. Gap)."""
    evaluation: EvaluationSettings = EvaluationSettings()
    grid: GridSpec
    hparams: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def model_key(self) -> dict[str, Any]:
        """What determines the original model (besides data and seed): dataset, architecture, recipe."""
        return {"dataset": self.dataset, "model": self.model, "train": self.train.model_dump()}


def benchmark_dirs() -> list[Path]:
    """Where benchmark specs are looked up: $UNLEARN_BENCHMARK_PATH, ./benchmarks, the repository's benchmarks/."""
    extra = [Path(p) for p in os.environ.get("UNLEARN_BENCHMARK_PATH", "").split(os.pathsep) if p]
    dirs: list[Path] = []
    for d in [*extra, Path.cwd() / "benchmarks", REPO_ROOT / "benchmarks"]:
        if d.is_dir() and d.resolve() not in [x.resolve() for x in dirs]:
            dirs.append(d)
    return dirs


def available_benchmarks() -> dict[str, Path]:
    """Benchmark name -> spec file, the first directory in `benchmark_dirs()` winning."""
    found: dict[str, Path] = {}
    for d in benchmark_dirs():
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def read_spec(path: Path) -> BenchmarkSpec:
    """Parse and validate one spec file; raise UserError with the file and the first problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read benchmark spec ({exc.strerror})") from None
    return parse_spec(text, path)


def parse_spec(text: str, where: Path | str) -> BenchmarkSpec:
    """Parse and validate spec `text`; errors name `where` (the file it is, or will be, in)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{where}: malformed YAML{line}") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: a benchmark spec must be a YAML mapping")
    try:
        return BenchmarkSpec.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{where}: {validation_problem(exc, 'spec')}") from None


def find_spec(name_or_path: str) -> Path:
    """The spec file of a benchmark given by name (see `unlearn benchmarks`) or by path."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise UserError(f"benchmark spec {path} does not exist")
        return path
    found = available_benchmarks()
    if name_or_path not in found:
        names = sorted(found)
        raise UserError(
            f"unknown benchmark {name_or_path!r}{did_you_mean(name_or_path, names)}; "
            f"available: {', '.join(names) or 'none'}"
        )
    return found[name_or_path]


def load_benchmark(name_or_path: str) -> BenchmarkSpec:
    """Load a benchmark by name (see `unlearn benchmarks`) or by the path of a spec file."""
    return read_spec(find_spec(name_or_path))
