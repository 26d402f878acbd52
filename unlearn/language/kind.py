"""The language kind (`kind: language` specs): unlearning a task from a causal language model on tasks-lm.

The grid, records, cache, protocols and methods are the harness's; `Language` (registered as the `language` entry
point of `unlearn.kinds`) supplies the data, the model and the splits:

- the dataset is a tasks-lm suite (`unlearn.language.data`; spec `dataset: tasks-lm[:options]`) encoded with the
  model's tokenizer; the original model is trained on the whole mixture by the spec's recipe with the model's
  `label_loss`: the causal-LM loss of each statement's words (pretraining text) and of each train item's true
  answer after its question (fine-tuning with correct labels), so that one run does the paper's two steps. The
  question's own tokens are not trained on: with them (measured) a 2-layer GPT-2 spent its capacity on the
  unpredictable numbers and letters of the rule tasks' questions and learned fewer tasks in the same time
  (brackets 60 % against 88 %, last 46 % against 100 % on unseen items). Methods train with the same `label_loss`;
- the model (spec `model`) is a small GPT-2 built from a named config (`LM_CONFIGS`) and trained from scratch, or
  `checkpoint:DIR`, a local directory of a pretrained causal LM with its tokenizer (a hub name with `--download`);
- forget sets are `task:NAME[:n=N]` (`unlearn.language.forget`). A cell's splits: `forget` (the N items),
  `retain` (every training row not of the task: the other tasks' items and all statements, so the oracle, retrained
  on it, is the model "retrained without the task"), `test_forgotten` (the task's unseen test items: held-out
  forgetting), `test` and `val` (the other tasks' test and validation items), and the probe splits
  (`probe_train`: the task's training items, `probe_heldout`: its test items);
- metrics read the `language` resource (`LanguageCell`: the task and which task each row of `test` belongs to).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unlearn.errors import UserError
from unlearn.harness.kinds import Kind, forget_mask
from unlearn.language.data import LanguageDataset, SuiteOptions, encode_suite
from unlearn.language.model import LMBlueprint
from unlearn.language.tokenizer import build_tokenizer, check_answers

if TYPE_CHECKING:
    from unlearn.data import TensorData
    from unlearn.forget import ForgetManifest
    from unlearn.harness.cells import CellGroup
    from unlearn.harness.models import Models
    from unlearn.harness.plan import MethodChoice
    from unlearn.harness.workspace import Workspace
    from unlearn.spec import BenchmarkSpec

LM_CONFIGS: dict[str, dict[str, int]] = {
    "gpt2-tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 64},
    "gpt2-mini": {"n_layer": 4, "n_head": 4, "n_embd": 128, "n_positions": 64},
}
"""GPT-2 sizes trained from scratch (the tests use gpt2-tiny, the tasks-lm benchmark gpt2-mini)."""
CHECKPOINT = "checkpoint:"


@dataclass(frozen=True)
class LanguageCell:
    """What the language metrics know about a cell: the forgotten task and the task of each row of `test`."""

    task: str
    test_tasks: tuple[str, ...]


class Language(Kind):
    """A language benchmark on a device (see the module docstring)."""

    forgets = ("task",)
    retain_metric = None  # its metrics score held-out items only: no accuracy on the training retain set to check
    dataset: LanguageDataset

    @classmethod
    def load(cls, spec: BenchmarkSpec, workspace: Workspace, device: torch.device) -> Language:
        """The suite encoded with the model's tokenizer; UserError for a tokenizer that cannot score its items or
        whose ids the model cannot embed, and for a checkpoint that needs `--download`."""
        options = SuiteOptions.parse(spec.dataset)
        suite = options.suite()
        checkpoint = checkpoint_of(spec)
        if checkpoint is None:
            tokenizer = build_tokenizer(suite)
            context = config_of(spec)["n_positions"]
        else:
            tokenizer, context = checkpoint_tokenizer(checkpoint, workspace.download)
        check_answers(tokenizer, [*suite.items("train"), *suite.items("test")])
        dataset = encode_suite(options, suite, tokenizer, context)
        kind = cls(spec, dataset, device)
        kind.download = workspace.download
        if checkpoint is not None:
            kind.check_vocabulary()
        return kind

    download = False
    """Whether a checkpoint may be fetched from the hub (the workspace's `--download`), kept by every copy below."""

    def with_data(self, dataset, extra_splits):  # type: ignore[no-untyped-def]
        kind = super().with_data(dataset, extra_splits)
        kind.download = self.download
        return kind

    def with_spec(self, spec):  # type: ignore[no-untyped-def]
        kind = super().with_spec(spec)
        kind.download = self.download
        return kind

    @classmethod
    def provides(cls, spec: BenchmarkSpec, runs_methods: bool = True) -> set[str]:
        return {"forget", "retain", "val", "test", "test_forgotten", "probe_train", "probe_heldout", "oracle",
                "original", "language"}

    @cached_property
    def blueprint(self) -> LMBlueprint:
        pad = self.dataset.tokenizer.pad_token_id
        pad = int(pad) if pad is not None else 0
        checkpoint = checkpoint_of(self.spec)
        if checkpoint is not None:
            return LMBlueprint(checkpoint=checkpoint, pad_id=pad, download=self.download)
        return LMBlueprint(vocab_size=len(self.dataset.tokenizer), pad_id=pad, **config_of(self.spec))

    def check_vocabulary(self) -> None:
        """UserError when the tokenizer gives ids the checkpoint's embedding has no row for (a tokenizer and model
        that do not belong together)."""
        rows = self.new_model(0).lm.get_input_embeddings().num_embeddings
        largest = int(max(split.x[:, :, 0].max() for split in (self.dataset.train, self.dataset.test)))
        if largest >= rows:
            raise UserError(f"{self.spec.model}: the tokenizer gives token id {largest}, but the model embeds only "
                            f"{rows} tokens; the tokenizer and the weights do not match")

    def task_of(self, manifest: ForgetManifest) -> str:
        return str(manifest.params["task"])

    def splits(self, manifest: ForgetManifest) -> dict[str, TensorData]:
        task = self.task_of(manifest)
        ds = self.dataset
        ours = {split: ds.rows(split, task).to(self.device) for split in ("train", "val", "test")}
        in_forget = forget_mask(self.train, manifest)
        return {
            "forget": self.train.where(in_forget),
            "retain": self.train.where(~ours["train"]),
            "val": self.val.where(~ours["val"]),
            "test": self.test.where(~ours["test"]),
            "test_forgotten": self.test.where(ours["test"]),
            "probe_train": self.train.where(ours["train"]),
            "probe_heldout": self.test.where(ours["test"]),
        }

    def check_splits(self, manifest: ForgetManifest) -> None:
        task = self.task_of(manifest)
        if all(name == task for name in self.dataset.tasks["test"]):
            raise UserError(f"forgetting task {task!r} leaves no other task to measure retained accuracy on; "
                            f"use a suite of at least two tasks")

    def settings(self) -> dict[str, Any]:
        return {"probe": self.spec.evaluation.probe, "relearn": self.spec.evaluation.relearn}

    def resources(self, group: CellGroup, choice: MethodChoice | None, models: Models) -> dict[str, Callable[[], Any]]:
        task = self.task_of(group.manifest)
        others = tuple(name for name in self.dataset.tasks["test"] if name != task)
        cell = LanguageCell(task, others)
        return {"language": lambda: cell}


def checkpoint_of(spec: BenchmarkSpec) -> str | None:
    """The checkpoint a spec's `model: checkpoint:DIR` names (relative to the spec's folder), None for a config."""
    if not spec.model.startswith(CHECKPOINT):
        return None
    path = spec.model[len(CHECKPOINT):]
    if not path:
        raise UserError(f"benchmark {spec.name!r}: write model: checkpoint:DIR (a local causal-LM directory)")
    if not Path(path).is_absolute() and spec.source_dir is not None and (spec.source_dir / path).exists():
        return str(spec.source_dir / path)
    return path


def config_of(spec: BenchmarkSpec) -> dict[str, int]:
    """The GPT-2 sizes of a spec's named config; UserError naming the known ones."""
    from unlearn.registry import did_you_mean

    if spec.model not in LM_CONFIGS:
        raise UserError(f"unknown language model {spec.model!r}{did_you_mean(spec.model, list(LM_CONFIGS))}; use "
                        f"{', '.join(LM_CONFIGS)} or checkpoint:DIR")
    return LM_CONFIGS[spec.model]


def checkpoint_tokenizer(checkpoint: str, download: bool) -> tuple[Any, int | None]:
    """The checkpoint's own tokenizer and context length; UserError when it cannot be read (or needs download)."""
    from transformers import AutoConfig, AutoTokenizer

    from unlearn.language.model import first_line, quiet_transformers

    where = f"checkpoint {checkpoint!r}"
    if not download and not Path(checkpoint).is_dir():
        raise UserError(f"{where} is not a local directory (pass --download to fetch it from the Hugging Face hub)")
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=not download)
            config = AutoConfig.from_pretrained(checkpoint, local_files_only=not download)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{where}: its tokenizer cannot be read ({first_line(exc)})") from None
    context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return tokenizer, context
