"""The language kind's dataset: a tasks-lm suite encoded for one tokenizer, as the harness's train/val/test splits.

A spec's `dataset` names the suite: `tasks-lm` is the default one (seed 0, 1000 train, 100 validation and 200 test
items per task, every task; `task:T` then forgets all 1000 of a task's training items, the paper's larger forget
set), and options after colons change it, e.g. `tasks-lm:seed=3:train=200:test=50:val=20:tasks=compare+city`
(the tests use small suites). Validation and test items are the suite's unseen items of each task, the first `val`
of them validation, the rest test.

Every split is `TensorData` in the layout of `unlearn.language.encode`, all with two options (x [N, 2, 2, L]):

- `train` is the pretraining mixture: every task's train items, task by task (y: the option holding the true
  answer), then every fact statement as a text row (both options the statement, y = 0). The model's `label_loss`
  trains on the answer of each item and on every token after the first of each statement;
- `val` and `test` hold items only.

`LanguageDataset.tasks` names the task of every row of each split ("" for a statement), which is how forget sets,
a cell's splits and the per-task metrics find a task's rows. The base `Dataset.fingerprint` hashes the token ids,
so a different suite or tokenizer gives a different original model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from unlearn.data.base import Dataset, dataset_options
from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.hashing import stable_hash
from unlearn.language.encode import CONTEXT, PADDING, SCORED, encode_items, pad, pad_id, token_ids
from unlearn.language.tasks import Suite, make_suite

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SUITE = "tasks-lm"
DEFAULTS: dict[str, Any] = {"seed": 0, "train": 1000, "val": 100, "test": 200, "tasks": None}
"""The default suite's options (`tasks` None: every task)."""
OPTIONS = ("answer", "option")
"""The 'classes' of a two-choice item: the option positions (random labels are drawn over these)."""


@dataclass(frozen=True)
class SuiteOptions:
    """A parsed `dataset` entry of a language spec."""

    seed: int = 0
    train: int = 1000
    val: int = 100
    test: int = 200
    tasks: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> SuiteOptions:
        """`tasks-lm[:key=value]...`; UserError naming the accepted options otherwise."""
        name, *parts = text.split(":")
        if name != SUITE:
            raise UserError(f"a language benchmark's dataset is {SUITE}[:seed=S][:train=N][:val=N][:test=N]"
                            f"[:tasks=a+b], not {text!r}")
        values: dict[str, Any] = dataset_options(text, list(DEFAULTS), [k for k in DEFAULTS if k != "tasks"],
                                                 f"options: {', '.join(DEFAULTS)}")
        for key in values:
            if key == "tasks":
                values[key] = tuple(values[key].split("+"))
                continue
            if values[key] < (0 if key == "seed" else 1):
                raise UserError(f"dataset {text!r}: {key} must be {'>= 0' if key == 'seed' else 'positive'}")
        if "tasks" in values and len(set(values["tasks"])) < 2:
            raise UserError(f"dataset {text!r}: a language benchmark needs at least two tasks (one to forget, the others "
                            f"to measure what is retained)")
        return cls(**values)

    def suite(self) -> Suite:
        return make_suite(self.seed, n_train=self.train, n_test=self.val + self.test, tasks=self.tasks)


@dataclass(frozen=True, eq=False)
class LanguageDataset(Dataset):
    """A tasks-lm suite encoded with one tokenizer; `tasks[split]` is the task of each row ("" for a statement)."""

    suite: Suite | None = None
    tokenizer: Any = None
    tasks: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:  # type: ignore[override]
        c, r, length = self.train.x.shape[1:]
        return int(c), int(r), int(length)

    def rows(self, split: str, task: str) -> torch.Tensor:
        """Positions of `task`'s rows in `split` (a bool mask over it)."""
        names = self.tasks[split]
        return torch.tensor([name == task for name in names], dtype=torch.bool)

    def check_task(self, task: str) -> None:
        """UserError naming the closest task when `task` is not in the suite."""
        assert self.suite is not None
        self.suite.task(task)


def encode_suite(options: SuiteOptions, suite: Suite, tokenizer: PreTrainedTokenizerBase,
                 max_length: int | None) -> LanguageDataset:
    """The suite's splits encoded with `tokenizer`; UserError for a row longer than the model's context."""
    train_items = list(suite.items("train"))
    val_items = [item for task in suite.tasks for item in task.test[:options.val]]
    test_items = [item for task in suite.tasks for item in task.test[options.val:]]
    statements = list(suite.statements)
    items = encode_items(train_items, tokenizer, suite.seed, max_length=max_length)
    lines = statement_rows(statements, tokenizer, max_length) if statements else items.x[:0]
    width = max(items.x.shape[-1], lines.shape[-1])
    train = TensorData.of(
        torch.cat([widen(items.x, width, tokenizer), widen(lines, width, tokenizer)]),
        torch.cat([items.y, torch.zeros(len(lines), dtype=torch.long)]),
    )
    val = encode_items(val_items, tokenizer, suite.seed + 1, max_length=max_length)
    test = encode_items(test_items, tokenizer, suite.seed + 2, max_length=max_length)
    vocab = sorted(tokenizer.get_vocab().items())
    name = f"{SUITE}-{stable_hash({'suite': suite.fingerprint, 'vocab': vocab})[:12]}"  # the manifests' folder
    return LanguageDataset(
        name=name, train=train, val=val, test=test, classes=OPTIONS, suite=suite, tokenizer=tokenizer,
        tasks={"train": tuple(i.task for i in train_items) + ("",) * len(statements),
               "val": tuple(i.task for i in val_items), "test": tuple(i.task for i in test_items)},
    )


def statement_rows(lines: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int | None) -> torch.Tensor:
    """Statements as two-option rows [N, 2, 2, L]: both options the line, every token after the first scored."""
    pieces = []
    for line, ids in zip(lines, token_ids(tokenizer, lines), strict=True):
        if not ids:
            raise UserError(f"the statement {line!r} encodes to no tokens")
        roles = [CONTEXT] + [SCORED] * (len(ids) - 1)
        pieces.append([(ids, roles), (ids, roles)])
    return pad(pieces, tokenizer, None, max_length, [repr(line) for line in lines])


def widen(x: torch.Tensor, width: int, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """`x` right-padded to `width` positions."""
    if x.shape[-1] == width:
        return x
    out = torch.full((*x.shape[:-1], width), pad_id(tokenizer), dtype=x.dtype)
    out[:, :, 1, :] = PADDING
    out[..., : x.shape[-1]] = x
    return out
