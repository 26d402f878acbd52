"""The generation track: unlearning a class from a class-conditional diffusion model (`kind: generation` specs).

The grid, records, cache, protocols and methods are the harness's; `Generation` is the kind (registered as
the `generation` entry point of `unlearn.kinds`), and what it changes is the model and the scoring:

- the benchmark's model is a `ClassConditionalDDPM` (unlearn.models.diffusion) trained with the DDPM
  objective by the spec's recipe; the oracle is `retrain`, the same training without the forgotten
  classes. Forget sets are class-wise (`class:K`), and a cell's splits are forget and retain only;
- every model of a cell (original, oracle, method) is sampled with the spec's pinned sampler settings and
  scored by the judge (`unlearn.metrics.generation`); each record gets a PNG grid of samples per class,
  original next to the method's output, saved next to it.
- The judge is a classifier of the benchmark's model zoo trained on the real training images
  (cached like any model), or a safetensors file that must classify exactly the benchmark's classes.
- A benchmark may plant images (`dataset: NAME:memorize=P[:copies=N][:seed=S]`, `unlearn.data.planted`): each
  under a condition id of its own, after the real classes, which the generator gets embeddings for, and which
  the `memorized` forget set forgets; the judge still learns and scores the real classes only, and the
  `planted` resource feeds the extraction rate (`unlearn.metrics.memorization`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unlearn.atomic import atomic_write
from unlearn.cache import ModelCache
from unlearn.checkpoints import load_weights_into, read_weights
from unlearn.data import Dataset, TensorData, load_dataset
from unlearn.data.planted import PlantedDataset, Planting, plant
from unlearn.errors import UserError
from unlearn.forget import ForgetManifest, ForgetSpec
from unlearn.harness.classification import Classification
from unlearn.harness.kinds import forget_mask
from unlearn.hashing import sha256_hex
from unlearn.metrics import Evaluation
from unlearn.metrics.generation import GenerationCell, Judge, Samples, samples
from unlearn.metrics.memorization import Planted
from unlearn.models import Blueprint
from unlearn.models.diffusion import DiffusionLoss, GeneratorBlueprint
from unlearn.seeding import generator as seeded_generator
from unlearn.spec import BenchmarkSpec, JudgeSettings
from unlearn.train import train_with_recipe

if TYPE_CHECKING:
    from unlearn.harness.cells import Cell, CellGroup
    from unlearn.harness.models import Models
    from unlearn.harness.plan import MethodChoice
    from unlearn.harness.workspace import Workspace


class Generation(Classification):
    """A generation benchmark on a device: the DDPM's blueprint and training, class-wise splits, judged samples.

    It shares the classification kind's data handling (and its checks of forget sets and methods against
    the data and model); everything else below differs."""

    forgets = ("class", "memorized")
    """A class-conditional generator forgets classes, or the images a benchmark planted."""

    @classmethod
    def load(cls, spec: BenchmarkSpec, workspace: Workspace, device: torch.device) -> Generation:
        """The benchmark's dataset, with the images it plants (if its `dataset` entry asks) planted."""
        planting = Planting.parse(spec.dataset)
        if planting is None:
            return super().load(spec, workspace, device)  # type: ignore[return-value]
        return cls(spec, plant(load_dataset(planting.base, workspace.data_root, workspace.download), planting), device)

    @classmethod
    def provides(cls, spec: BenchmarkSpec, runs_methods: bool = True) -> set[str]:
        planted = {"planted"} if Planting.parse(spec.dataset) is not None else set()
        return {"forget", "retain", "oracle", "original", "judge", *planted}

    @classmethod
    def check_forget(cls, spec: BenchmarkSpec, forget: ForgetSpec) -> None:
        if forget.kind not in cls.forgets:
            raise UserError(f"generation benchmark {spec.name!r} forgets classes: use class:K (or memorized, for planted images), not {forget.text!r}")
        if forget.kind == "memorized" and Planting.parse(spec.dataset) is None:
            raise UserError(f"the memorized forget set needs a benchmark that planted images; {spec.name!r} planted none "
                            f"(plant them with dataset: {spec.dataset}:memorize=P)")

    uses_probes = False
    retain_metric = None
    """Not checked: the retained classes' score, Acc-r, is the judge's accuracy on generated samples, which differs by
    several points between DDPMs retrained alike (6 on a committed seed), so it cannot tell an undertrained oracle."""

    @cached_property
    def blueprint(self) -> GeneratorBlueprint:  # type: ignore[override]
        c, h, w = self.dataset.input_shape
        return GeneratorBlueprint(self.spec.model, c, (h, w), self.dataset.num_classes)

    def train_recipe(self, model: nn.Module, data: TensorData, seed: int, progress: str | None = None) -> nn.Module:
        """The DDPM objective (noise, steps and label dropout seeded by `seed`) with the spec's recipe."""
        loss = DiffusionLoss(seeded_generator(seed, "diffusion-noise"))
        return train_with_recipe(model, data, self.spec.train, seed, progress, loss=loss, reference=len(self.train))

    def splits(self, manifest: ForgetManifest) -> dict[str, TensorData]:
        """Forget (training images of the forgotten classes) and retain (the rest, also the FD reference)."""
        in_forget = forget_mask(self.train, manifest)
        return {"forget": self.train.where(in_forget), "retain": self.train.where(~in_forget)}

    def check_splits(self, manifest: ForgetManifest) -> None:
        return None

    _judge: Judge | None = None

    def judge(self, cache: ModelCache) -> Judge:
        """The benchmark's judge, read or trained (cached in `cache`) on first use."""
        if self._judge is None:
            self._judge = load_judge(self.spec.evaluation.generation.judge, self.spec, self.real, cache,
                                     self.device, self.spec.source_dir)
        return self._judge

    @property
    def real(self) -> Dataset:
        """The dataset without planted images (the judge's classes and training images)."""
        if isinstance(self.dataset, PlantedDataset) and self.dataset.real is not None:
            return self.dataset.real
        return self.dataset

    def settings(self) -> dict[str, Any]:
        evaluation = self.spec.evaluation
        return {"generation": evaluation.generation, "memorization": evaluation.memorization,
                "diversity": evaluation.diversity}

    def resources(self, group: CellGroup, choice: MethodChoice | None, models: Models) -> dict[str, Callable[[], Any]]:
        """The judge, with the cell's forgotten classes and real images (retained images of the real classes), and
        the planted images when the benchmark planted some."""
        judged = self.real.num_classes
        retain = group.splits["retain"]
        cell = GenerationCell(self.judge(models.cache), tuple(group.manifest.forgotten_classes or ()), judged,
                              retain.where(retain.y < judged), self.dataset.num_classes)
        out: dict[str, Callable[[], Any]] = {"judge": lambda: cell}
        if isinstance(self.dataset, PlantedDataset):
            planted = Planted(self.train, self.dataset.planted_ids)
            out["planted"] = lambda: planted
        return out

    def artifacts(self, cell: Cell, group: CellGroup, evaluation: Evaluation) -> dict[str, str]:
        """Save the grid of samples (original | this method) next to the record; returns its file name."""
        path = cell.path.with_suffix(".samples.png")
        png = sample_grid_png(
            samples(group.original_eval), samples(evaluation), self.spec.evaluation.generation.grid_columns,
            tuple(group.manifest.forgotten_classes or ()), self.dataset.classes, cell.method.name,
        )
        atomic_write(path, lambda tmp: tmp.write_bytes(png), "sample grid")
        return {"samples": path.name}


def load_judge(
    settings: JudgeSettings, spec: BenchmarkSpec, dataset: Dataset, cache: ModelCache, device: torch.device,
    spec_dir: Path | None = None,
) -> Judge:
    """The benchmark's judge: read from `settings.checkpoint`, or trained on the real training split and cached.

    UserError when a checkpoint does not classify exactly the benchmark's classes (head size, or the
    `classes` its metadata names), or cannot be read.
    """
    c, h, w = dataset.input_shape
    blueprint = Blueprint(settings.model, c, (h, w), dataset.num_classes, tuple(dataset.mean), tuple(dataset.std))
    if settings.checkpoint is not None:
        path = Path(settings.checkpoint)
        if not path.is_absolute() and spec_dir is not None:
            path = spec_dir / path
        if not path.is_file():
            raise UserError(f"judge checkpoint {path} does not exist")
        state, meta = read_weights(path)
        head = state.get("head.weight")
        if head is not None and head.shape[0] != dataset.num_classes:
            raise UserError(
                f"judge {path} classifies {head.shape[0]} classes, benchmark {spec.name!r} has {dataset.num_classes} "
                f"({dataset.name}); use a judge trained on the benchmark's classes"
            )
        named = meta.get("classes")
        if named is not None and list(named) != list(dataset.classes):
            raise UserError(
                f"judge {path} was trained on classes {list(named)}, benchmark {spec.name!r} has "
                f"{list(dataset.classes)}; use a judge trained on the benchmark's classes"
            )
        model = blueprint.build(settings.seed, "judge", device=device)
        load_weights_into(model, state, f"judge {path}")
        return Judge(model.eval().requires_grad_(False), sha256_hex(path.read_bytes()))
    key = {"role": "judge", "dataset": dataset.name, "model": settings.model, "train": settings.train.key(),
           "data": dataset.fingerprint, "classes": list(dataset.classes), "seed": settings.seed}
    train = dataset.train.to(device)
    cached = cache.get_or_build(
        "judge", key,
        lambda: train_with_recipe(blueprint.build(settings.seed, "judge", device=device), train, settings.train,
                                  settings.seed),
        lambda: blueprint.build(settings.seed, "judge", device=device),
    )
    return Judge(cached.model.eval().requires_grad_(False), cached.key_hash)


@dataclass(frozen=True)
class _Panel:
    title: str
    made: Samples


def sample_grid_png(
    before: Samples, after: Samples, columns: int, forgotten: tuple[int, ...], classes: tuple[str, ...], method: str
) -> bytes:
    """A PNG: one row per class, `columns` samples each, the original model left and `method` right; the rows of
    forgotten classes are marked."""
    from matplotlib.figure import Figure
    from torchvision.utils import make_grid

    from unlearn.leaderboard.plots import png_bytes

    panels = [_Panel("original", before), _Panel(method, after)]
    n_classes = len(before.images)
    fig = Figure(figsize=(2 + 2 * 0.4 * columns, 0.45 * n_classes + 0.8))
    axes = fig.subplots(1, 2)
    for ax, panel in zip(axes, panels, strict=True):
        rows = [panel.made.images[c][:columns].float().cpu() for c in range(n_classes)]
        tiles = torch.cat(rows)
        grid = make_grid(tiles, nrow=columns, padding=1, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).numpy() if grid.shape[0] == 3 else grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{panel.title} ({panel.made.steps} step{'s' if panel.made.steps != 1 else ''})", fontsize=9)
        side = tiles.shape[-2] + 1
        ax.set_yticks([side * (c + 0.5) for c in range(n_classes)])
        ax.set_yticklabels([f"{classes[c]}{' ✗' if c in forgotten else ''}" for c in range(n_classes)], fontsize=7)
        ax.set_xticks([])
    fig.tight_layout()
    return png_bytes(fig)
