"""Run a grid of (method × forget set × seed) cells of one benchmark, resumably.

Per seed and forget set: the manifest is loaded or built, the original model and
the oracle (the `retrain` method's cached output) are loaded or trained, both are
evaluated once, and then each method gets a request holding only what its track
grants. Each cell ends as one JSON record whose path is keyed by the hash of the
cell's config, so a rerun skips finished cells (a record there counts only if it is the
cell's own, see `unlearn.claims`).
"""

from __future__ import annotations

import copy
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from unlearn.progress import progress_bar

from unlearn.atomic import ensure_writable
from unlearn.banks import CellBanks
from unlearn.cache import KINDS as CACHE_KINDS
from unlearn.cache import CachedModel, ModelCache
from unlearn.checkpoints import load_weights_into
from unlearn.claims import not_this_cells
from unlearn.data import Dataset, TensorData, load_dataset
from unlearn.errors import Diverged, StorageError, UserError
from unlearn.data.manipulations import Manipulated
from unlearn.forget import ForgetManifest, ForgetSpec, ModelSource, load_or_build
from unlearn.forget.manifest import indices_sha256
from unlearn.hashing import stable_hash
from unlearn.locks import sweep_stale
from unlearn.names import brief
from unlearn.methods import (
    METHODS,
    Method,
    Track,
    UnlearnRequest,
    hparams_dict,
    make_hparams,
    resolve_method,
)
from unlearn.metrics import METRICS, Evaluation, Scores, check_dependencies, evaluate, gaps
from unlearn.metrics.base import SPLITS
from unlearn.metrics.probe import probe_selection, probe_splits
from unlearn.models import Blueprint
from unlearn.provenance import environment
from unlearn.results import ORACLE, ForgetInfo, InvalidRecord, ResultRecord, read_record, record_dir, record_path
from unlearn.spec import BenchmarkSpec
from unlearn.train import check_finite, train_with_recipe

if TYPE_CHECKING:
    from unlearn.executors import Executor


@dataclass(frozen=True)
class Workspace:
    """Where a run reads and writes: records, model cache, forget-set manifests, dataset files."""

    results_dir: Path
    cache_dir: Path
    forget_dir: Path
    data_root: Path
    download: bool = False
    committed_forget_dir: Path | None = None
    """Manifests used, read only, where `forget_dir` has none (the CLI: those shipped with the package); None: none."""

    @classmethod
    def at(cls, root: Path | str = ".", **overrides: Any) -> "Workspace":
        """The standard layout under `root`: data/runs, data/cache, data/forget-sets, data/datasets."""
        root = Path(root)
        base = cls(root / "data/runs", root / "data/cache", root / "data/forget-sets", root / "data/datasets")
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def check_writable(self) -> None:
        """Raise UserError unless every output directory, the cache's folders too, can be created and written
        (writes nothing)."""
        for label, path in (
            ("results directory", self.results_dir),
            ("cache directory", self.cache_dir),
            *(("cache directory", self.cache_dir / kind) for kind in CACHE_KINDS),
            ("forget-set directory", self.forget_dir),
        ):
            ensure_writable(path, label)


@dataclass(frozen=True)
class MethodChoice:
    """A method of the grid: its name, class, validated hyperparameters and where it came from."""

    name: str
    cls: type[Method]
    hparams: Any
    origin: str

    def instance(self) -> Method:
        return self.cls(self.hparams)


@dataclass(frozen=True)
class GridPlan:
    """A validated grid: nothing in it can fail for a reason the user could have fixed."""

    spec: BenchmarkSpec
    methods: tuple[MethodChoice, ...]
    forgets: tuple[ForgetSpec, ...]
    seeds: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.methods) * len(self.forgets) * len(self.seeds)


def choose_method(spec: BenchmarkSpec, name: str, overrides: Mapping[str, Any] | None = None) -> MethodChoice:
    """Resolve a method and its hyperparameters: reference defaults < benchmark's tuned values < overrides."""
    cls = resolve_method(name)
    values = {**spec.hparams.get(name, {}), **(overrides or {})}
    return MethodChoice(name, cls, make_hparams(cls, name, values), METHODS.origin(name))


def provides(spec: BenchmarkSpec, runs_methods: bool = True) -> Callable[[str], bool]:
    """What the harness can give metrics for `spec`: the splits, the original and the oracle, and the
    banks when `evaluation.bank.size` >= 3 (method banks and shadows only where it runs the method)."""
    banks = {"oracle-bank", "method-bank", "shadows"} if runs_methods else {"oracle-bank"}
    if spec.kind == "generation":
        return {"forget", "retain", "oracle", "original", "judge"}.__contains__
    available = {*SPLITS, "oracle", "original", *(banks if spec.evaluation.bank.size >= 3 else ())}
    return available.__contains__


def plan_grid(
    spec: BenchmarkSpec,
    methods: Sequence[str] | None = None,
    forgets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
) -> GridPlan:
    """Validate the grid's names and values against the registries (no data is loaded here)."""
    method_names = list(dict.fromkeys(methods or spec.grid.methods))
    hparams = hparams or {}
    for name in spec.hparams:  # tuned values of a method that does not exist, or that it does not take, are errors
        try:
            choose_method(spec, name)
        except UserError as exc:
            raise UserError(f"benchmark {spec.name!r}: hparams of {brief(name)}: {exc}; fix or remove them") from None
    for name in hparams:
        if name not in method_names:
            raise UserError(f"--hparam names method {name!r}, which is not in the grid ({', '.join(method_names)})")
    produced = {key for name in spec.metrics for key in METRICS.get(name).produces}
    for what, keys in (("gap", spec.gap_metrics), ("report", spec.report_metrics)):
        missing = [key for key in keys if key not in produced]
        if missing:
            raise UserError(f"benchmark {spec.name!r}: {what} metrics {missing} are produced by none of {spec.metrics}")
    choices = tuple(choose_method(spec, name, hparams.get(name)) for name in method_names)
    for choice in choices:
        if spec.kind not in choice.cls.kinds:
            fitting = [n for n in METHODS.names() if spec.kind in getattr(_loadable(n), "kinds", ())]
            raise UserError(
                f"method {choice.name!r} unlearns {' and '.join(choice.cls.kinds)} models, benchmark {spec.name!r} is a "
                f"{spec.kind} benchmark; its methods: {', '.join(fitting)}"
            )
    parsed = (ForgetSpec.parse(text) for text in dict.fromkeys(forgets or spec.grid.forget))
    forget_specs = tuple({f.text: f for f in parsed}.values())  # random:0.1 and random:0.10 are one set
    available = provides(spec)
    for forget in forget_specs:
        builder = forget.builder
        check_dependencies(list(dict.fromkeys([*spec.metrics, *builder.extra_metrics])),
                           lambda name, b=builder: available(name) or name in b.provides)
    seed_list = tuple(dict.fromkeys(seeds if seeds is not None else spec.grid.seeds))
    if not seed_list:
        raise UserError("no seeds given")
    if any(s < 0 for s in seed_list):
        raise UserError("seeds must be non-negative integers")
    return GridPlan(spec, choices, forget_specs, seed_list)


def _loadable(name: str) -> Any:
    """The registered method `name`, or None when it is a plugin that fails to load (for listings)."""
    try:
        return METHODS.get(name)
    except UserError:
        return None


class Task:
    """A benchmark on a device: its dataset (kept on the device), model factory and recipe.

    With `manipulated` (corrective cells), the dataset is the manipulated one, every split gains
    the manipulation's evaluation splits and every score the forget set's `extra_metrics`.
    """

    def __init__(
        self, spec: BenchmarkSpec, dataset: Dataset, device: torch.device,
        manipulated: Manipulated | None = None, extra_metrics: Sequence[str] = (),
    ):
        self.spec = spec
        self.dataset = manipulated.dataset if manipulated is not None else dataset
        self.device = device
        self.manipulated = manipulated
        self.extra_metrics = tuple(extra_metrics)
        self.train = self.dataset.train.to(device)
        self.val = self.dataset.val.to(device)
        self.test = self.dataset.test.to(device)
        self.extra_splits = {k: v.to(device) for k, v in (manipulated.splits if manipulated else {}).items()}
        self.uses_probes = any("probe_train" in METRICS.get(name).needs for name in spec.metrics)

    @classmethod
    def load(cls, spec: BenchmarkSpec, workspace: Workspace, device: torch.device) -> "Task":
        return cls(spec, load_dataset(spec.dataset, workspace.data_root, workspace.download), device)

    def check(self, plan: GridPlan) -> None:
        """Raise UserError if a forget spec does not fit the dataset (e.g. an unknown class) or a
        method's hyperparameters do not fit the model (e.g. more layers than it has)."""
        for forget in plan.forgets:
            forget.builder.check(forget.params, self.dataset)
        for choice in plan.methods:
            choice.instance().check(self.new_model(0))

    @cached_property
    def blueprint(self) -> Blueprint:
        """The benchmark's model as a picklable factory."""
        c, h, w = self.dataset.input_shape
        ds = self.dataset
        return Blueprint(self.spec.model, c, (h, w), ds.num_classes, tuple(ds.mean), tuple(ds.std))

    def train_recipe(self, model: nn.Module, data: TensorData, seed: int, progress: str | None = None) -> nn.Module:
        """Train `model` on `data` as the original model of `seed` is trained (the oracle's training)."""
        return train_with_recipe(model, data, self.spec.train, seed, progress)

    def new_model(self, seed: int, *tags: str) -> nn.Module:
        """A freshly initialised model for `seed` on the device (the global RNG is left untouched).

        Without tags it is the original model's initialisation; with tags, an independent
        one derived from the seed and the tags.
        """
        return self.blueprint.build(seed, *tags, device=self.device)

    def original_key(self, seed: int) -> dict[str, Any]:
        """Everything that determines the original model of `seed`."""
        return {"role": "original", **self.spec.model_key(), "data": self.dataset.fingerprint, "seed": seed}

    def _forget_mask(self, manifest: ForgetManifest) -> Tensor:
        in_forget = torch.zeros(len(self.train), dtype=torch.bool, device=self.device)
        in_forget[torch.as_tensor(manifest.indices, dtype=torch.long, device=self.device)] = True
        return in_forget

    def splits(self, manifest: ForgetManifest) -> dict[str, TensorData]:
        """The evaluation splits of a cell: forget, retain, val, test (and test_forgotten, class-wise), and
        the probe splits (probe_train, probe_heldout); UserError when the probe splits are too small."""
        in_forget = self._forget_mask(manifest)
        splits = {"forget": self.train.where(in_forget), "retain": self.train.where(~in_forget)}
        if manifest.forgotten_classes:
            gone = torch.as_tensor(manifest.forgotten_classes, device=self.device)
            splits["val"] = self.val.where(~torch.isin(self.val.y, gone))
            splits["test"] = self.test.where(~torch.isin(self.test.y, gone))
            forgotten_test = self.test.where(torch.isin(self.test.y, gone))
            if len(forgotten_test):
                splits["test_forgotten"] = forgotten_test
        else:
            splits["val"], splits["test"] = self.val, self.test
        splits.update(self.extra_splits)
        if self.uses_probes:
            splits.update(probe_splits(
                self.train, in_forget, splits.get("test_forgotten"), self.spec.evaluation.probe, probe_seed(manifest)
            ))
        return splits

    def check_splits(self, manifest: ForgetManifest) -> None:
        """Raise UserError if the cell's splits cannot serve its metrics (a probe split too small), from
        labels alone, so that a grid can check every cell before anything trains."""
        if not self.uses_probes:
            return
        forgotten = None
        if manifest.forgotten_classes:
            gone = torch.as_tensor(manifest.forgotten_classes, device=self.device)
            forgotten = self.test.y[torch.isin(self.test.y, gone)]
            forgotten = forgotten if len(forgotten) else None  # as in `splits`: then D_f is held out instead
        settings = self.spec.evaluation.probe
        probe_selection(self.train.y, self._forget_mask(manifest), forgotten, settings, probe_seed(manifest))


def forgotten_classes(splits: Mapping[str, TensorData]) -> tuple[int, ...]:
    """The classes of which the forget split holds samples and the retain split none (class-wise forgetting)."""
    gone = set(splits["forget"].y.unique().tolist()) - set(splits["retain"].y.unique().tolist())
    return tuple(sorted(int(c) for c in gone))


def probe_seed(manifest: ForgetManifest) -> int:
    """The seed of a cell's probe hold-out: the forget set's own (class-wise sets have none and need none)."""
    return manifest.seed if manifest.seed is not None else 0


class Unlearned(NamedTuple):
    """A method's output for one cell: the model, how long it took (as cached, for a cache hit), whether it
    came from the cache, its cache key hash (cached methods only) and what the method reported."""

    model: nn.Module
    seconds: float
    from_cache: bool
    key: str | None
    info: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """A cell's method run, scored: what its record holds besides the cell's description."""

    scores: Scores
    seconds: float
    from_cache: bool
    info: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    """Files saved next to the record (see `Runner.artifacts`)."""


@dataclass
class Cell:
    """One (method, forget set, seed) cell with its config, config hash and record path."""

    method: MethodChoice
    forget: ForgetSpec
    manifest: ForgetManifest
    seed: int
    config: dict[str, Any]
    config_hash: str
    path: Path


@dataclass
class CellGroup:
    """What every method of one (forget set, seed) shares: splits, original model, oracle and their scores.

    The original's and the oracle's Evaluations are kept, so what a metric computes for them
    (forward passes, probe accuracies, relearn targets) is computed once for all methods.
    """

    forget: ForgetSpec
    manifest: ForgetManifest
    seed: int
    splits: dict[str, TensorData]
    original: nn.Module
    original_key: str
    oracle_key: str
    banks: CellBanks = field(init=False)
    original_eval: Evaluation = field(init=False)
    oracle_eval: Evaluation = field(init=False)
    original_scores: Scores = field(init=False)
    oracle_scores: Scores = field(init=False)
    ideal_oracle_scores: Scores | None = None
    """Corrective cells: the oracle retrained without every manipulated sample, not only the identified ones."""
    ideal_oracle_key: str | None = None
    steps: list[Any] = field(default_factory=list)
    """Continual cells: one step per task (`unlearn.continual.TaskStep`); this group is the last task's."""

    @property
    def original_metrics(self) -> dict[str, float]:
        return self.original_scores.values

    @property
    def oracle_metrics(self) -> dict[str, float]:
        return self.oracle_scores.values


@dataclass
class GridResult:
    """The records of a grid, in grid order, and how many cells ran versus were reused."""

    records: list[ResultRecord] = field(default_factory=list)
    ran: int = 0
    reused: int = 0


class Runner:
    """Executes a GridPlan on a Task, writing one record per cell into the workspace."""

    def __init__(
        self,
        plan: GridPlan,
        task: Task,
        workspace: Workspace,
        *,
        progress: bool = False,
        log: Callable[[str], None] | None = None,
        retry_failed: bool = False,
    ):
        self.plan = plan
        self.task = task
        self.spec = plan.spec
        self.workspace = workspace
        self.cache = ModelCache(workspace.cache_dir)
        self.progress = progress
        self.log = log or (lambda _msg: None)
        self.warn = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
        self.retry_failed = retry_failed
        self.env = environment(task.device)
        self._derived: dict[tuple, Runner] = {}

    # -- cells ---------------------------------------------------------------------------------

    def cell(self, method: MethodChoice, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> Cell:
        """Describe one cell; its config determines its result, and its hash names the record file."""
        config = {
            **self.scoring_config(),
            "method": method.name,
            "method_origin": method.origin,
            "hparams": hparams_dict(method.hparams),
            "track": self.track_of(method, manifest),
            "forget": forget.text,
            "forget_sha256": manifest.sha256,
            "seed": seed,
        }
        config_hash = stable_hash(config)
        path = record_path(self.workspace.results_dir, self.spec.name, method.name, forget.text, seed, config_hash)
        return Cell(method, forget, manifest, seed, config, config_hash, path)

    def scoring_config(self) -> dict[str, Any]:
        """What every cell's scores depend on besides its method, forget set and seed: the benchmark, its model,
        data, metrics and evaluation settings (the first keys of a record's config)."""
        return {
            "benchmark": self.spec.name,
            "benchmark_model": self.spec.model_key(),
            "data": self.task.dataset.fingerprint,
            "metrics": self.metrics,
            "gap_metrics": list(self.spec.gap_metrics),
            "report_metrics": list(self.spec.report_metrics),
            "evaluation": self.evaluation_settings,
        }

    def track_of(self, method: MethodChoice, manifest: ForgetManifest) -> str:
        """The data-access track the method runs under in this cell (recorded with its result)."""
        return method.instance().track.value

    def finished(self, cell: Cell, quiet: bool = False) -> ResultRecord | None:
        """The cell's stored record if it counts as done (valid, the cell's own, and not failed under
        --retry-failed); `quiet` leaves out the warnings about a record that is not (already given)."""
        if not cell.path.exists():
            return None
        try:
            record = read_record(cell.path)
            problem = not_this_cells(record, cell)
        except InvalidRecord as exc:
            record, problem = None, f"warning: {exc}"
        if problem is not None:
            if not quiet:
                self.warn(f"{problem}; running the cell again")
            return None
        if record.status == "failed" and self.retry_failed:
            return None
        return record

    # -- models ----------------------------------------------------------------------------------

    def request(
        self, method: Method, original: nn.Module, splits: Mapping[str, TensorData], seed: int,
        track: Track | None = None,
    ) -> UnlearnRequest:
        """The request for one cell: only the data the method's track grants, never test/val/oracle. `track`
        names the track when the cell narrows it (the few-shot track hands `splits["retain"]` as k-shot data)."""
        retain = splits["retain"] if method.track is Track.FULL else None
        forget = None if method.track is Track.DATA_FREE else splits["forget"]
        return UnlearnRequest(
            model=copy.deepcopy(original),
            forget=forget,
            retain=retain,
            num_classes=self.task.dataset.num_classes,
            device=self.task.device,
            seed=seed,
            recipe=self.spec.train,
            new_model=lambda *tags: self.task.new_model(seed, *tags),
            track=track or method.track,
            train_recipe=lambda model, data: self.task.train_recipe(model, data, seed, "retrain" if self.progress else None),
            forget_classes=forgotten_classes(splits),
            progress=self.progress,
        )

    def unlearned_key(self, choice: MethodChoice, original_key: dict[str, Any], forget_key: str, seed: int) -> dict:
        """What determines a method's output: its original model, forget set, hyperparameters and run seed."""
        return {
            "role": "unlearned",
            "original": original_key,
            "forget_sha256": forget_key,
            "method": choice.name,
            "method_origin": choice.origin,
            "hparams": hparams_dict(choice.hparams),
            "track": choice.instance().track.value,
            "seed": seed,
        }

    def unlearned(
        self, choice: MethodChoice, original: nn.Module, original_key: dict[str, Any], forget_key: str,
        splits: Mapping[str, TensorData], seed: int, track: Track | None = None,
    ) -> Unlearned:
        """Run a method with run seed `seed` (or load its cached output). `forget_key` identifies the forget set
        (a manifest's sha256); `track` a narrowed track (see `request`)."""
        method = choice.instance()
        request = self.request(method, original, splits, seed, track)

        def call() -> nn.Module:
            model = method.unlearn(request)
            self.check_output(model, seed)
            return model

        if method.cache_output:
            key = self.unlearned_key(choice, original_key, forget_key, seed)
            cached = self.cache.get_or_build("unlearned", key, call, lambda: self.task.new_model(seed))
            return Unlearned(cached.model, cached.seconds, cached.hit, cached.key_hash, dict(request.info))
        start = time.perf_counter()
        model = call()
        return Unlearned(model, time.perf_counter() - start, False, None, dict(request.info))

    def check_output(self, model: Any, seed: int) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"unlearn() returned {type(model).__name__}, not a torch.nn.Module")
        check_finite(model)
        try:
            load_weights_into(self.task.new_model(seed), model.state_dict(), "the unlearned model")
        except UserError as exc:  # here it is the method's fault, so a failed cell, not a usage error
            raise ValueError(str(exc)) from None

    def original(self, seed: int) -> CachedModel:
        """Load or train the original model of `seed` (trained on the whole training split)."""
        task = self.task
        label = "original" if self.progress else None
        return self.cache.get_or_build(
            "original",
            task.original_key(seed),
            lambda: task.train_recipe(task.new_model(seed), task.train, seed, label),
            lambda: task.new_model(seed),
        )

    @property
    def model_source(self) -> ModelSource:
        """This benchmark's models, for forget-set builders that select with the original model."""
        return ModelSource(
            benchmark=self.spec.name,
            original_key=lambda seed: self.cache.key_hash(self.task.original_key(seed)),
            original=lambda seed: self.original(seed).model,
            new_model=self.task.new_model,
        )

    def manifest(self, forget: ForgetSpec, seed: int) -> ForgetManifest:
        """The forget set's manifest for `seed` (built on first use, with this benchmark's models if it needs them)."""
        return load_or_build(
            self.workspace.forget_dir, forget, self.task.dataset, seed, self.model_source, progress=self.progress,
            committed=self.workspace.committed_forget_dir,
        )

    def for_forget(self, forget: ForgetSpec, seed: int) -> "Runner":
        """The runner of (forget set, seed)'s cells: this one, or for a corrective set one whose task trains and
        scores on the manipulated data of that seed (so every model and record hash includes the manipulation).

        The last manipulated task is kept, so the cells of one manipulation and seed (e.g. several
        identified fractions) share it, and a grid holds one manipulated copy of the data at a time.
        """
        builder = forget.builder
        which = builder.manipulation_key(forget.params)
        if which is None and not builder.extra_metrics and builder.protocol == "single":
            return self
        key = (which, seed, builder.extra_metrics, builder.protocol)
        if key not in self._derived:
            cls = PROTOCOLS[builder.protocol]()
            derived = cls.__new__(cls)
            derived.__dict__.update(self.__dict__)  # same plan, workspace, cache, log and environment
            derived.task = Task(self.spec, self.task.dataset, self.task.device,
                                forget.manipulation(self.task.dataset, seed), builder.extra_metrics)
            derived._derived = {}
            self._derived = {key: derived}
        return self._derived[key]

    def group(self, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> CellGroup:
        """Load or train the original model and the oracle of (forget set, seed) and score both (corrective
        sets: also the ideal oracle, retrained without every manipulated sample)."""
        splits = self.task.splits(manifest)
        original_key = self.task.original_key(seed)
        original = self.original(seed)
        oracle, _, _, oracle_key, _ = self.unlearned(
            self.oracle_choice, original.model, original_key, manifest.sha256, splits, seed
        )
        group = CellGroup(forget, manifest, seed, splits, original.model, original.key_hash, oracle_key or "")
        group.banks = CellBanks(self, group)
        group.oracle_eval = self.evaluation(oracle, group, self.oracle_choice)
        group.original_eval = self.evaluation(original.model, group, None)
        group.oracle_scores = self.score(group.oracle_eval)
        group.original_scores = self.score(group.original_eval)
        if self.task.manipulated is not None:
            every = [int(i) for i in self.task.manipulated.indices]
            all_manipulated = manifest.model_copy(update={"indices": every, "size": len(every), "sha256": indices_sha256(every)})
            ideal, _, _, ideal_key, _ = self.unlearned(
                self.oracle_choice, original.model, original_key, all_manipulated.sha256,
                self.task.splits(all_manipulated), seed,
            )
            group.ideal_oracle_scores = self.score(self.evaluation(ideal, group, self.oracle_choice))
            group.ideal_oracle_key = ideal_key
        return group

    @cached_property
    def evaluation_settings(self) -> dict[str, Any]:
        """The spec's `evaluation:` settings its metrics read (unused families stay out of every config hash)."""
        families = {family for name in self.spec.metrics for family in METRICS.get(name).settings}
        return {k: v for k, v in self.spec.evaluation.model_dump().items() if k in families}

    @property
    def metrics(self) -> list[str]:
        """The metrics of this runner's cells: the benchmark's, then its forget set's own (corrective sets)."""
        return list(dict.fromkeys([*self.spec.metrics, *self.task.extra_metrics]))

    @cached_property
    def oracle_choice(self) -> MethodChoice:
        return choose_method(self.spec, ORACLE)

    def evaluation(self, model: nn.Module, group: CellGroup, choice: MethodChoice | None) -> Evaluation:
        """`model`, the output of method `choice` (None: the original model), on the group's splits, with
        the group's original and oracle, and with banks when the spec asks for them, as dependencies."""
        resources: dict[str, Callable[[], Any]] = {
            "oracle": lambda: group.oracle_eval, "original": lambda: group.original_eval
        }
        if self.spec.evaluation.bank.size >= 3:
            resources["oracle-bank"] = group.banks.oracle_bank
            resources["method-bank"] = lambda: group.banks.method_bank(choice)
            resources["shadows"] = lambda: group.banks.shadows(choice)
        settings = {"probe": self.spec.evaluation.probe, "relearn": self.spec.evaluation.relearn}
        return Evaluation(model, group.splits, self.spec.eval_batch_size, resources, group.seed, settings)

    def score(self, evaluation: Evaluation) -> Scores:
        """All the cell's metrics (the benchmark's and its forget set's) for one model, one forward pass per split."""
        return evaluate(evaluation, self.metrics)

    # -- the grid ----------------------------------------------------------------------------------

    def run(self, executor: Executor | None = None) -> GridResult:
        """Run every cell not already finished with `executor` (default: serially, here); return all the grid's
        records in grid order.

        Lock files nobody holds (left by a run killed with SIGKILL) are removed from the model cache and the grid's
        results directories first. Forget-set manifests are built here, before any cell runs. The unfinished cells
        of each (forget set, seed) group go to the executor as one unit, listed just before the executor asks for
        them.
        """
        from unlearn.executors import SerialExecutor, WorkUnit

        executor = executor or SerialExecutor()
        result = GridResult()
        sweep_stale(self.workspace.cache_dir)
        for forget in self.plan.forgets:
            for method in self.plan.methods:
                sweep_stale(record_dir(self.workspace.results_dir, self.spec.name, method.name, forget.text), False)
        manifests = {
            (seed, forget.text): self.manifest(forget, seed) for seed in self.plan.seeds for forget in self.plan.forgets
        }
        for seed in self.plan.seeds:
            for forget in self.plan.forgets:  # a split too small for a metric is refused before anything trains
                self.for_forget(forget, seed).task.check_splits(manifests[(seed, forget.text)])
        bar = progress_bar(total=self.plan.size, desc=self.spec.name, unit="cell", disable=not self.progress)
        records: list[ResultRecord | None] = [None] * self.plan.size
        labels: list[str] = []

        def where(position: int) -> str:
            return f"[{position + 1}/{self.plan.size}] {labels[position]}"

        def units() -> Iterator[WorkUnit]:
            for seed in self.plan.seeds:
                for forget in self.plan.forgets:
                    manifest = manifests[(seed, forget.text)]
                    runner = self.for_forget(forget, seed)
                    cells, positions = [], []
                    for method in self.plan.methods:
                        position = len(labels)
                        cell = runner.cell(method, forget, manifest, seed)
                        labels.append(f"{cell.method.name} · {forget.text} · seed {seed}")
                        record = self.finished(cell)
                        if record is None:
                            cells.append(cell)
                            positions.append(position)
                            continue
                        records[position] = record
                        result.reused += 1
                        self.log(f"{where(position)}: reused {cell.path}")
                        bar.update(1)
                    if cells:
                        yield WorkUnit(forget, seed, manifest, tuple(cells), tuple(positions))

        for done in executor.run(self, units()):
            records[done.position] = done.record
            result.ran += not done.reused
            result.reused += done.reused
            bar.set_postfix_str(labels[done.position])
            how = "reused, written by another run: " if done.reused else ""
            self.log(f"{where(done.position)}: {how}{describe(done.record)}")
            bar.update(1)
        bar.close()
        missing = [labels[i] for i, r in enumerate(records) if r is None]
        if missing:  # an executor's bug, never a method's
            raise RuntimeError(f"{executor.name} executor returned no record for {', '.join(missing)}")
        result.records = [r for r in records if r is not None]
        return result

    def outcome(self, cell: Cell, group: CellGroup) -> Outcome:
        """Run the cell's method on the group's original model and score its output.

        The oracle's own cell (its cached model has the group oracle's key) takes the group's evaluation of the
        oracle instead of scoring the same model twice."""
        original_key = self.task.original_key(cell.seed)
        out = self.unlearned(cell.method, group.original, original_key, cell.manifest.sha256, group.splits, cell.seed)
        if out.key is not None and out.key == group.oracle_key:
            evaluation = group.oracle_eval
            scores = Scores(dict(group.oracle_scores.values), dict(group.oracle_scores.info))
        else:
            evaluation = self.evaluation(out.model, group, cell.method)
            scores = self.score(evaluation)
        return Outcome(scores, out.seconds, out.from_cache, out.info, self.artifacts(cell, group, evaluation))

    def artifacts(self, cell: Cell, group: CellGroup, evaluation: Evaluation) -> dict[str, str]:
        """Write files that belong next to the cell's record (before the record, so that it never names a missing
        file) and return them as name -> file name in the record's directory; none for classifiers."""
        return {}

    def execute(self, cell: Cell, group: CellGroup) -> ResultRecord:
        """Run one cell's method and score it; any exception becomes a failed record."""
        base = dict(
            benchmark=self.spec.name,
            method=cell.method.name,
            method_origin=cell.method.origin,
            hparams=cell.config["hparams"],
            track=cell.config["track"],
            forget=ForgetInfo(
                spec=cell.forget.text,
                sha256=cell.manifest.sha256,
                size=cell.manifest.size,
                forgotten_classes=cell.manifest.forgotten_classes,
            ),
            seed=cell.seed,
            config=cell.config,
            config_hash=cell.config_hash,
            oracle_metrics=group.oracle_metrics,
            original_metrics=group.original_metrics,
            ideal_oracle_metrics=group.ideal_oracle_scores.values if group.ideal_oracle_scores else None,
            models={"original": group.original_key, "oracle": group.oracle_key,
                    **({"ideal_oracle": group.ideal_oracle_key} if group.ideal_oracle_key else {})},
            env=self.env,
        )
        try:
            outcome = self.outcome(cell, group)
            return ResultRecord(
                status="ok",
                metrics=outcome.scores.values,
                metric_info=outcome.scores.info,
                gaps=gaps(outcome.scores.values, group.oracle_metrics, self.spec.gap_metrics),
                run_time_s=outcome.seconds,
                run_time_from_cache=outcome.from_cache,
                method_info=outcome.info,
                artifacts=outcome.artifacts,
                **base,
            )
        except StorageError:  # a full or read-only disk stops the run (finished records are kept)
            raise
        except Exception as exc:  # a method's failure is a result, not a crash of the grid
            reason = f"diverged: {exc}" if isinstance(exc, Diverged) else f"{type(exc).__name__}: {exc}"
            return ResultRecord(
                status="failed",
                error=reason.splitlines()[0] if reason else type(exc).__name__,
                traceback=traceback.format_exc(),
                metrics={},
                gaps={},
                run_time_s=None,
                **base,
            )


def _continual_runner() -> type[Runner]:
    from unlearn.continual import ContinualRunner

    return ContinualRunner


PROTOCOLS: dict[str, Callable[[], type[Runner]]] = {"single": lambda: Runner, "continual": _continual_runner}
"""How a forget set's cells run (`ForgetBuilder.protocol`) -> the Runner class that runs them."""


def _generation() -> tuple[type[Task], type[Runner]]:
    from unlearn.generation import GenerationRunner, GenerationTask

    return GenerationTask, GenerationRunner


KINDS: dict[str, Callable[[], tuple[type[Task], type[Runner]]]] = {
    "classification": lambda: (Task, Runner), "generation": _generation,
}
"""A benchmark's `kind` -> its (Task, Runner) classes."""


def load_task(spec: BenchmarkSpec, workspace: Workspace, device: torch.device) -> Task:
    """The benchmark's task (its kind's Task class) with its dataset loaded on `device`."""
    task_cls, _ = KINDS[spec.kind]()
    return task_cls(spec, load_dataset(spec.dataset, workspace.data_root, workspace.download), device)


def make_runner(plan: GridPlan, task: Task, workspace: Workspace, **options: Any) -> Runner:
    """The runner of the plan's benchmark kind (see `Runner` for the options)."""
    _, runner_cls = KINDS[plan.spec.kind]()
    return runner_cls(plan, task, workspace, **options)


def describe(record: ResultRecord) -> str:
    """A one-line summary of a record for logs: its gap metrics, Avg. Gap and run time."""
    if record.status == "failed":
        return f"FAILED ({record.error})"
    values = " ".join(f"{k} {v:.1f}" for k, v in record.metrics.items() if k in record.gaps and k != "Avg. Gap")
    return f"{values} gap {record.gaps['Avg. Gap']:.2f} in {record.run_time_s:.2f}s"
