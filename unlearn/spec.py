"""Benchmark specs: validated YAML files under benchmarks/ naming data, model, recipe, grid and tuned values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from unlearn.errors import UserError, validation_problem
from unlearn.names import BENCHMARK_NAME, name_problem
from unlearn.registry import did_you_mean
from unlearn.shipped import BENCHMARKS, shipped_dir
from unlearn.yaml_input import load_document, read_text

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The folder holding the package: a checkout's root, or site-packages when installed (see unlearn.shipped for the
files that ship with the package)."""
DEFAULT_BENCHMARK = "digits"
"""The benchmark commands run when none is named; the leaderboard shows it first."""
MAX_THREADS = 1024
"""The most CPU threads a run may ask for (`--threads`, `cpu_threads`): torch crashes the process without a message
on `set_num_threads(100000)`; 1024 was checked to run, and is more than any single machine's hardware threads."""


LATER_FIELDS: dict[str, Any] = {
    "optimizer": "sgd", "max_grad_norm": None, "milestones": [], "gamma": 0.1, "oracle_steps": "epochs",
}
"""Recipe fields added after models were cached, with their defaults: left out of model keys at those defaults."""
SERIALISED_LATER = ("milestones", "gamma", "oracle_steps")
"""Of those, the ones added after result records first held whole recipes (generation judges): left out of every
serialised recipe at their defaults, so that those records' config hashes do not change either."""


class Recipe(BaseModel):
    """How a benchmark trains its original model (and, identically, the retrained oracle)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: Literal["constant", "cosine", "multistep"] = "cosine"
    milestones: list[int] = Field(default_factory=list)
    """`multistep`: the epochs after which the learning rate is multiplied by `gamma` (SalUn: 91, 136)."""
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    augment: Literal["none", "crop-flip", "flip"] = "none"
    optimizer: Literal["sgd", "adam"] = "sgd"
    """SGD with `momentum`; or Adam (β 0.9, 0.999; `momentum` unused), as diffusion models are trained."""
    max_grad_norm: PositiveFloat | None = None
    """Clip the gradient's global norm before each step (DDPM: 1.0); None: no clipping."""
    oracle_steps: Literal["epochs", "original"] = "epochs"
    """How the oracle (`retrain`) scales this recipe to the retain set D_r, which is smaller than the original's
    training set D: `epochs`, the same number of epochs (the reference's; fewer optimiser steps, |D_r|/|D| of the
    original's); `original`, the same number of optimiser steps as the original (the epochs scaled up by about
    |D|/|D_r|, the last one cut at the original's step count), with the learning-rate schedule spanning those
    scaled epochs (cosine over all of them, multistep milestones scaled alike), so that the oracle's schedule
    covers its whole training as the original's does (`unlearn.train.oracle_recipe`)."""

    @model_validator(mode="after")
    def _milestones(self) -> Recipe:
        if self.schedule == "multistep":
            ms = self.milestones
            if not ms or any(b <= a for a, b in zip(ms, ms[1:], strict=False)) or ms[0] < 1 or ms[-1] >= self.epochs:
                raise ValueError(f"a multistep schedule needs increasing milestones within 1..{self.epochs - 1}, got {ms}")
        elif self.milestones:
            raise ValueError(f"milestones belong to the multistep schedule, not to {self.schedule!r}")
        return self

    @model_serializer(mode="wrap")
    def _stable(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k not in SERIALISED_LATER or v != LATER_FIELDS[k]}

    def key(self) -> dict[str, Any]:
        """The recipe as hashed into model keys: `LATER_FIELDS` are left out at their defaults, so that the keys of
        models trained before those fields existed do not change."""
        return {k: v for k, v in self.model_dump().items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}


MIN_GRID_SEEDS = 2
"""Seeds a benchmark's own grid lists at least: one seed gives no interval and no paired test."""


class GridSpec(BaseModel):
    """The default grid `unlearn run` executes for a benchmark."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    methods: list[str] = Field(min_length=1)
    forget: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _enough_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) < MIN_GRID_SEEDS:
            raise ValueError(
                f"lists {len(set(seeds))} distinct seed(s); a benchmark's grid needs at least {MIN_GRID_SEEDS}, since its "
                "tables give 95 % intervals and paired tests over seeds (`--seeds 0` still runs one seed)"
            )
        return seeds


class ProbeSettings(BaseModel):
    """Linear probes on frozen features: which forgotten samples are held out and how the probe is fitted."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

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

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    fraction: float = Field(0.1, gt=0.0, lt=1.0)
    """Share of D_f the attacker fine-tunes on (at least one sample); the rest is scored."""
    steps: PositiveInt = 20
    lr: PositiveFloat = 0.01
    batch_size: PositiveInt = 16
    tolerance: NonNegativeFloat = 1.0
    """Relearned once forget accuracy is within this many points of the original model's."""


class BankSettings(BaseModel):
    """Banks of models per cell for per-example scores: N retrained oracles, N runs of each method."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

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


class JudgeSettings(BaseModel):
    """The judge of a generation benchmark: a classifier trained on the real training images only (never on
    generated ones), with this model and recipe at this seed, once for all cells; or a safetensors file."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str = "small-cnn"
    train: Recipe | None = None
    """Required unless `checkpoint` is given."""
    seed: int = Field(0, ge=0)
    checkpoint: str | None = None
    """A judge trained elsewhere (safetensors, made by `unlearn export` or `save_weights`), relative to the spec's
    directory or absolute; it must classify exactly the benchmark's classes."""


class GenerationSettings(BaseModel):
    """How a generation benchmark samples and judges a model; pinned here and recorded in every record, since
    FID-style numbers move a lot with the sample count and the sampler's steps."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    samples_per_class: PositiveInt = 100
    sampler_steps: int = Field(50, ge=1, le=1000)
    """DDIM steps (a one-step generator such as SFD's ignores them; records say which ran)."""
    guidance: float = Field(2.0, ge=0.0, le=20.0)
    """Classifier-free guidance w in ε_u + w·(ε_c − ε_u): 0 unconditional, 1 plain conditional."""
    eta: float = Field(0.0, ge=0.0, le=1.0)
    """DDIM η (0: deterministic)."""
    near: list[float] = Field(default_factory=lambda: [0.25])
    """Generality: condition on (1 − λ)·e(c_f) + λ·e(c) for each λ here and each remaining class c."""
    near_samples: PositiveInt = 20
    """Samples per (λ, remaining class) of the generality metric."""
    shell: list[float] = Field(default_factory=list)
    """Generality on RealEra's neighbourhood: `shell_samples` random conditions at each cosine here from e(c_f),
    with the same norm (empty: not measured)."""
    shell_samples: PositiveInt = 50
    grid_columns: int = Field(8, ge=1, le=32)
    """Samples per class in the PNG grid saved next to each record."""
    judge: JudgeSettings | None = None

    @field_validator("near", "shell")
    @classmethod
    def _inside_unit_interval(cls, values: list[float], info: ValidationInfo) -> list[float]:
        if any(not 0.0 < v < 1.0 for v in values):
            what = {"near": "near weights", "shell": "shell cosines"}[info.field_name]
            raise ValueError(f"{what} must lie strictly between 0 and 1, got {values}")
        return values


class MemorizationSettings(BaseModel):
    """How the extraction rate of a generation benchmark's planted images is judged (`unlearn.metrics.memorization`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    threshold: PositiveFloat = 0.2
    """A sample is extracted when its nearest training image is a planted one at most this far: the root-mean-square
    pixel difference (L2 distance / sqrt(pixels), images in [0, 1]). Calibrated per benchmark (docs/generation.md)."""


class DiversitySettings(BaseModel):
    """How the diversity of a generator's remaining-class samples is judged (`unlearn.metrics.diversity`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    k: int = Field(5, ge=1, le=50)
    """Neighbours of Coverage: a real sample is covered when a generated one lies within the distance to its k-th
    nearest real neighbour (Naeem et al. recommend 5)."""


class EvaluationSettings(BaseModel):
    """Settings of the evaluations beyond one forward pass: probes, relearning, model banks, generation."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    probe: ProbeSettings = ProbeSettings()
    relearn: RelearnSettings = RelearnSettings()
    bank: BankSettings = BankSettings()
    generation: GenerationSettings = GenerationSettings()
    memorization: MemorizationSettings = MemorizationSettings()
    diversity: DiversitySettings = DiversitySettings()


class BenchmarkSpec(BaseModel):
    """One benchmark: dataset, model, the original model's training recipe, metrics and default grid.

    `hparams` holds this benchmark's tuned hyperparameters per method; they override
    the method's reference defaults, and `--hparam` overrides them in turn.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    description: str
    kind: str = "classification"
    """What the benchmark's model does (a name in `unlearn.harness.kinds.KINDS`): classify (the default), or generate
    images of a class (`generation`: a class-conditional diffusion model, scored by `evaluation.generation.judge`)."""
    dataset: str
    model: str
    scale: Literal["cpu", "gpu"] = "cpu"
    """`gpu`: sized for a GPU (a CPU takes seconds per training step); `unlearn benchmarks` says so."""
    train: Recipe
    eval_batch_size: PositiveInt = 1024
    cpu_threads: int | None = Field(None, ge=1, le=MAX_THREADS)
    """torch intra-op threads when running on CPU (None: torch's default); small models run fastest on 1."""
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "mia-efficacy"])
    gap_metrics: list[str] = Field(default_factory=lambda: ["UA", "RA", "TA", "MIA-Efficacy"])
    report_metrics: list[str] = Field(default_factory=list)
    """Further metric keys the leaderboard shows next to the gap metrics (not part of Avg. Gap)."""
    evaluation: EvaluationSettings = EvaluationSettings()
    grid: GridSpec
    hparams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    _source_dir: Path | None = PrivateAttr(None)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        problem = name_problem(name, BENCHMARK_NAME)
        if problem is not None:  # it names the folders records and leaderboard tables live in
            raise ValueError(f"the benchmark name {problem}")
        return name

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str) -> str:
        from unlearn.harness.kinds import KINDS

        if not KINDS.knows(kind):
            raise ValueError(f"unknown kind {kind!r}{did_you_mean(kind, KINDS.names())}; known: {', '.join(KINDS.names())}")
        return kind

    @model_validator(mode="after")
    def _generation_needs(self) -> BenchmarkSpec:
        if self.kind == "generation":
            judge = self.evaluation.generation.judge
            if judge is None or (judge.train is None and judge.checkpoint is None):
                raise ValueError("a generation benchmark needs evaluation.generation.judge with a train recipe or a checkpoint")
            if self.evaluation.bank.size:
                raise ValueError("model banks (evaluation.bank) serve classification benchmarks only")
        return self

    @model_validator(mode="after")
    def _oracle_banks(self) -> BenchmarkSpec:
        if self.train.oracle_steps != "epochs" and self.evaluation.bank.size:
            raise ValueError("train.oracle_steps: original is not implemented for model banks (evaluation.bank), whose "
                             "retrained members and shadows train with the recipe's epochs; use one or the other")
        return self

    @property
    def source_dir(self) -> Path | None:
        """The directory of the spec file it was read from (None for a spec parsed from text)."""
        return self._source_dir

    def model_key(self) -> dict[str, Any]:
        """What determines the original model (besides data and seed): dataset, architecture, recipe."""
        return {"dataset": self.dataset, "model": self.model, "train": self.train.key()}


def benchmark_dirs() -> list[Path]:
    """Where benchmark specs are looked up: $UNLEARN_BENCHMARK_PATH, ./benchmarks, then the shipped specs (a
    checkout's own benchmarks/, or the copy in an installed wheel)."""
    extra = [Path(p) for p in os.environ.get("UNLEARN_BENCHMARK_PATH", "").split(os.pathsep) if p]
    dirs: list[Path] = []
    for d in [*extra, Path.cwd() / "benchmarks", shipped_dir(BENCHMARKS)]:
        if d is not None and d.is_dir() and d.resolve() not in [x.resolve() for x in dirs]:
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
    spec = parse_spec(read_text(path, "benchmark spec"), path)
    spec._source_dir = path.resolve().parent
    return spec


def parse_spec(text: str, where: Path | str) -> BenchmarkSpec:
    """Parse and validate spec `text`; errors name `where` (the file it is, or will be, in)."""
    data = load_document(text, str(where))
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
