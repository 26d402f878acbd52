"""The model banks of a cell: N retrained oracles, N runs of a method, K unlearned shadow models.

Per-example metrics compare distributions over many models, not one model:

- the oracle bank: the `retrain` method run at N seeds derived from the cell seed (tag
  "oracle-bank"). Each member is exactly the retrain output at that seed and is cached
  under the same key `Models.run_method` uses, so banks are shared by every method of the
  cell and by later runs. Missing members are trained together by `train_models`
  (sequential, vmapped or a process pool, as `evaluation.bank.mode` says).
- a method bank: the method run N times with run seeds derived from the cell seed (tag
  "method-bank"). With `bank.originals: shared` (default) every run starts from the cell's
  original model, as the NeurIPS 2023 competition runs a submission N times from one
  original model; the original row's bank is then N copies of the original (no
  unlearning), and a deterministic method gives N identical models, which the range rule
  scores ε = 50 (0 points). With `independent`, run i starts from the original model
  trained at seed i (the original of a cell with that seed), and the original row's bank
  is those N originals. Either way the retrain row's bank is a second, independent retrain
  bank: the calibration ceiling.
- shadows (U-LiRA): K models, each trained on a seeded random half of the training split
  and then unlearned by the method on the part of the cell's forget set inside its half
  (retrain: retrained on its half without that part; original row: not unlearned). Every
  forget example is thus unlearned in about half of the shadows and never seen in the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from unlearn.bank_training import train_models
from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.forget.manifest import indices_sha256
from unlearn.metrics import Evaluation
from unlearn.progress import progress_bar
from unlearn.results import ORACLE
from unlearn.seeding import derive_seed, generator
from unlearn.train import train_with_recipe

if TYPE_CHECKING:
    from unlearn.harness.cells import CellGroup
    from unlearn.harness.models import Models
    from unlearn.harness.plan import MethodChoice


@dataclass
class Bank:
    """N models of one kind for one cell, each evaluated (lazily) on the cell's splits."""

    evaluations: list[Evaluation]
    seeds: list[int]
    how: str
    """How the members were obtained: a training mode, "method runs", "cache" or "copies of the original"."""
    seconds: float

    def __len__(self) -> int:
        return len(self.evaluations)


@dataclass
class ShadowBank:
    """K shadow models, each trained on a random half and unlearned, evaluated on the cell's splits."""

    evaluations: list[Evaluation]
    unlearned: np.ndarray
    """[K, |D_f|] booleans: forget example j was in shadow k's half (and unlearned); else never seen."""
    seconds: float


def cell_banks(group: CellGroup, models: Models) -> CellBanks:
    """The banks of `group` (kept in the group, so each bank is built once for all its methods)."""
    if "banks" not in group.extras:
        group.extras["banks"] = CellBanks(models, group)
    return group.extras["banks"]


@dataclass
class CellBanks:
    """Builds (once) and hands out the banks of one cell for the metrics that need them."""

    models: Models
    group: CellGroup
    _banks: dict[tuple, Bank] = field(default_factory=dict)
    _shadows: dict[str | None, ShadowBank] = field(default_factory=dict)
    _shadow_originals: dict[int, tuple[torch.nn.Module, dict, np.ndarray]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.models.spec.evaluation.bank.size

    def seeds(self, tag: str) -> list[int]:
        return [derive_seed(self.group.seed, tag, str(i)) for i in range(self.size)]

    def _evaluation(self, model: torch.nn.Module) -> Evaluation:
        return Evaluation(model, self.group.splits, self.models.spec.eval_batch_size, seed=self.group.seed)

    def oracle_bank(self) -> Bank:
        """N retrained oracles of the cell (seeds tagged "oracle-bank")."""
        if ("oracle",) not in self._banks:
            self._banks[("oracle",)] = self._retrain_bank("oracle-bank")
        return self._banks[("oracle",)]

    def method_bank(self, choice: MethodChoice | None) -> Bank:
        """N runs of `choice` (None: no unlearning); from the cell's original or from N originals (see spec)."""
        key = ("method", None if choice is None else choice.name)
        if key not in self._banks:
            independent = self.models.spec.evaluation.bank.originals == "independent"
            if choice is None and independent:
                bank = self.original_bank()
            elif choice is None:
                bank = Bank([self.group.original_eval] * self.size, [self.group.seed] * self.size,
                            "copies of the original", 0.0)
            elif choice.name == ORACLE:
                bank = self._retrain_bank("method-bank")
            else:
                bank = self._method_runs(choice, independent)
            self._banks[key] = bank
        return self._banks[key]

    def original_bank(self) -> Bank:
        """N original models at the method-bank seeds, each exactly the original model of a cell with that seed."""
        if ("originals",) not in self._banks:
            kind = self.models.kind
            seeds = self.seeds("method-bank")
            keys = [kind.original_key(s) for s in seeds]
            self._banks[("originals",)] = self._train_bank("original", keys, seeds, kind.train, "original bank")
        return self._banks[("originals",)]

    def _retrain_bank(self, tag: str) -> Bank:
        """Retrain at the seeds of `tag` (cached under the keys `Models.run_method` uses for retrain)."""
        models, group = self.models, self.group
        seeds = self.seeds(tag)
        independent = tag == "method-bank" and models.spec.evaluation.bank.originals == "independent"
        keys = [
            models.method_key(
                models.oracle_choice, models.kind.original_key(s if independent else group.seed),
                group.manifest.sha256, s,
            )
            for s in seeds
        ]
        return self._train_bank("unlearned", keys, seeds, group.splits["retain"], tag)

    def _train_bank(self, kind: str, keys: list[dict], seeds: list[int], data: TensorData, label: str) -> Bank:
        """Load the cached models of `keys`, train the missing ones together on `data` with the recipe."""
        models, settings = self.models, self.models.spec.evaluation.bank
        start = time.perf_counter()
        how: list[str] = []

        def train_missing(missing: list[int]) -> list[torch.nn.Module]:
            trained = train_models(
                models.kind.blueprint, data, models.spec.train, [seeds[i] for i in missing],
                mode=settings.mode, device=models.kind.device, jobs=settings.jobs,
                progress=f"{label} ({len(missing)} of {len(seeds)})" if models.progress else None,
            )
            for i, model in zip(missing, trained.models, strict=True):
                models.check_output(model, seeds[i])
            how.append(trained.mode if len(missing) == len(seeds) else f"{trained.mode} ({len(missing)} trained, rest cached)")
            return trained.models

        templates = [lambda s=s: models.kind.new_model(s) for s in seeds]
        cached = models.cache.get_or_build_many(kind, keys, train_missing, templates)
        evaluations = [self._evaluation(m.model) for m in cached]
        return Bank(evaluations, seeds, how[0] if how else "cache", time.perf_counter() - start)

    def _method_runs(self, choice: MethodChoice, independent: bool) -> Bank:
        models, group = self.models, self.group
        seeds = self.seeds("method-bank")
        originals = self.original_bank().evaluations if independent else None
        start = time.perf_counter()
        evaluations = []
        for i, s in enumerate(progress_bar(seeds, desc=f"{choice.name} bank", leave=False, disable=not models.progress)):
            original = originals[i].model if originals else group.original
            original_key = models.kind.original_key(s if originals else group.seed)
            model, *_ = models.run_method(choice, original, original_key, group.manifest.sha256, group.splits, s)
            evaluations.append(self._evaluation(model))
        how = "method runs from independent originals" if originals else "method runs from the cell's original"
        return Bank(evaluations, seeds, how, time.perf_counter() - start)

    # -- shadows (U-LiRA) ------------------------------------------------------------------------

    def _shadow_original(self, k: int) -> tuple[torch.nn.Module, dict, np.ndarray]:
        """Shadow k's original model (trained on a seeded random half of the training split), its key, its half."""
        if k not in self._shadow_originals:
            models, kind = self.models, self.models.kind
            s = derive_seed(self.group.seed, "shadow", str(k))
            n = len(kind.train)
            half = np.sort(torch.randperm(n, generator=generator(s, "shadow-half"))[: n // 2].numpy())
            key = {**kind.original_key(self.group.seed), "role": "shadow-original", "shadow_seed": s,
                   "half_sha256": indices_sha256(half.tolist())}
            data = kind.train.subset(half.tolist())
            cached = models.cache.get_or_build(
                "original", key, lambda: train_with_recipe(kind.new_model(s), data, models.spec.train, s),
                lambda: kind.new_model(s),
            )
            self._shadow_originals[k] = (cached.model, key, half)
        return self._shadow_originals[k]

    def shadows(self, choice: MethodChoice | None) -> ShadowBank:
        """K shadows unlearned by `choice` (None: the original row, not unlearned)."""
        name = None if choice is None else choice.name
        if name in self._shadows:
            return self._shadows[name]
        models, train = self.models, self.models.kind.train
        forget_idx = np.asarray(self.group.manifest.indices)
        start = time.perf_counter()
        evaluations, unlearned = [], []
        label = "original" if name is None else name
        for k in progress_bar(range(self.size), desc=f"{label} shadows", leave=False, disable=not models.progress):
            original, key, half = self._shadow_original(k)
            inside = np.isin(forget_idx, half)
            if not inside.any():
                raise UserError(f"shadow {k} holds none of the {len(forget_idx)}-sample forget set; use a larger one")
            model = original
            if choice is not None:
                forget_part = forget_idx[inside]
                retain_part = np.setdiff1d(half, forget_part)
                splits = {"forget": train.subset(forget_part.tolist()), "retain": train.subset(retain_part.tolist())}
                s = derive_seed(self.group.seed, "shadow", str(k))
                model, *_ = models.run_method(choice, original, key, indices_sha256(forget_part.tolist()), splits, s)
            evaluations.append(self._evaluation(model))
            unlearned.append(inside)
        bank = ShadowBank(evaluations, np.stack(unlearned), time.perf_counter() - start)
        self._shadows[name] = bank
        return bank
