"""The models of a benchmark: original models loaded or trained, methods run (their outputs cached), manifests built.

Every model the harness trains goes through `Models`: the original model of a seed, a method's output for
a cell (the oracle is `retrain`'s), and, for the banks, the same at derived seeds. Each is cached under a
key of everything that determines it (`unlearn.cache`), so cells, banks and later runs share them.
Banks and forget-set builders reach the harness only through this class.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from torch import nn

from unlearn.cache import CachedModel, ModelCache
from unlearn.checkpoints import load_weights_into
from unlearn.errors import UserError
from unlearn.forget import ForgetManifest, ForgetSpec, ModelSource, load_or_build
from unlearn.harness.cells import Unlearned
from unlearn.harness.plan import MethodChoice, choose_method
from unlearn.methods import Method, Track, UnlearnRequest, hparams_dict
from unlearn.results import ORACLE
from unlearn.train import check_finite

if TYPE_CHECKING:
    from unlearn.data import TensorData
    from unlearn.harness.kinds import Kind
    from unlearn.harness.workspace import Workspace


class Models:
    """Loads or trains the models of one benchmark kind (on its data and device), cached in the workspace."""

    def __init__(self, kind: Kind, workspace: Workspace, progress: bool = False):
        self.kind = kind
        self.spec = kind.spec
        self.workspace = workspace
        self.cache = ModelCache(workspace.cache_dir)
        self.progress = progress

    def on(self, kind: Kind) -> Models:
        """The same cache and workspace for another kind instance (a corrective cell's manipulated data)."""
        return Models(kind, self.workspace, self.progress)

    @cached_property
    def oracle_choice(self) -> MethodChoice:
        return choose_method(self.spec, ORACLE)

    # -- original models and forget sets -----------------------------------------------------------

    def load_or_train_original(self, seed: int) -> CachedModel:
        """Load or train the original model of `seed` (trained on the whole training split)."""
        kind = self.kind
        label = "original" if self.progress else None
        return self.cache.get_or_build(
            "original",
            kind.original_key(seed),
            lambda: kind.train_recipe(kind.new_model(seed), kind.train, seed, label),
            lambda: kind.new_model(seed),
        )

    @property
    def model_source(self) -> ModelSource:
        """This benchmark's models, for forget-set builders that select with the original model."""
        return ModelSource(
            benchmark=self.spec.name,
            original_key=lambda seed: self.cache.key_hash(self.kind.original_key(seed)),
            original=lambda seed: self.load_or_train_original(seed).model,
            new_model=self.kind.new_model,
        )

    def build_manifest(self, forget: ForgetSpec, seed: int) -> ForgetManifest:
        """The forget set's manifest for `seed` (built on first use, with this benchmark's models if it needs them)."""
        return load_or_build(
            self.workspace.forget_dir, forget, self.kind.dataset, seed, self.model_source, progress=self.progress,
            committed=self.workspace.committed_forget_dir,
        )

    # -- methods -----------------------------------------------------------------------------------

    def request(
        self, method: Method, original: nn.Module, splits: Mapping[str, TensorData], seed: int,
        track: Track | None = None,
    ) -> UnlearnRequest:
        """The request for one cell: only the data the method's track grants, never test/val/oracle. `track`
        names the track when the cell narrows it (the few-shot track hands `splits["retain"]` as k-shot data)."""
        kind = self.kind
        retain = splits["retain"] if method.track is Track.FULL else None
        forget = None if method.track is Track.DATA_FREE else splits["forget"]
        return UnlearnRequest(
            model=copy.deepcopy(original),
            forget=forget,
            retain=retain,
            num_classes=kind.dataset.num_classes,
            device=kind.device,
            seed=seed,
            recipe=self.spec.train,
            new_model=lambda *tags: kind.new_model(seed, *tags),
            track=track or method.track,
            train_recipe=lambda model, data: kind.train_recipe(model, data, seed, "retrain" if self.progress else None),
            forget_classes=forgotten_classes(splits),
            progress=self.progress,
        )

    def method_key(self, choice: MethodChoice, original_key: dict[str, Any], forget_key: str, seed: int) -> dict:
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

    def run_method(
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
            key = self.method_key(choice, original_key, forget_key, seed)
            cached = self.cache.get_or_build("unlearned", key, call, lambda: self.kind.new_model(seed))
            return Unlearned(cached.model, cached.seconds, cached.hit, cached.key_hash, dict(request.info))
        start = time.perf_counter()
        model = call()
        return Unlearned(model, time.perf_counter() - start, False, None, dict(request.info))

    def check_output(self, model: Any, seed: int) -> None:
        """Raise ValueError (a failed cell) unless a method's output is a finite model of the benchmark's kind."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"unlearn() returned {type(model).__name__}, not a torch.nn.Module")
        check_finite(model)
        try:
            load_weights_into(self.kind.new_model(seed), model.state_dict(), "the unlearned model")
        except UserError as exc:  # here it is the method's fault, so a failed cell, not a usage error
            raise ValueError(str(exc)) from None


def forgotten_classes(splits: Mapping[str, TensorData]) -> tuple[int, ...]:
    """The classes of which the forget split holds samples and the retain split none (class-wise forgetting)."""
    gone = set(splits["forget"].y.unique().tolist()) - set(splits["retain"].y.unique().tolist())
    return tuple(sorted(int(c) for c in gone))
