"""The tasks-lm suite: synthetic two-choice tasks generated from a seed, split into train and test items.

Each item is a question with a true answer and one distractor, both single words from the task's small closed
answer set. A language model is scored on it as lm-evaluation-harness scores multiple choice: the log-likelihood
of " answer" against " distractor" after the question.

There are two families of task, so that the contrast of "Unforgettable Generalization in Language Models"
(Zhang, Choshen, Andreas, COLM 2024) can appear at a small scale:

- *rule* tasks (`unlearn.language.rule_tasks`): one shared rule decides every answer (comparison, membership,
  bracket balance, an entailment-like lookup, parity, the last of a list);
- *knowledge* tasks (`unlearn.language.knowledge_tasks`): the answer is an item-specific fact about a made-up
  entity, taught by a statement ("the city of zorbin is mibu .") that is part of the pretraining text.

Test items are never seen in training: within a task, test questions differ from every train question; in
knowledge tasks, the entities asked about in test items (`Suite.test_entities`) have their facts stated in the
pretraining text, but no question about them appears in any training item. `make_suite` checks both.

Every random choice draws from a `random.Random` seeded from (seed, purpose), never the global generator, so a
suite is a pure function of its arguments; `Suite.fingerprint` hashes its content for caches to key on.

The API: `make_suite(seed, n_train, n_test, tasks)` -> `Suite`; `suite.task(name)` -> `TaskSplit` (train, test,
answers, family, statements); `suite.items("train" | "test")`; `pretraining_text(suite)`; `task_names(family)`;
`get_task(name)`; `vocabulary(suite)`. The tokenizer is in `unlearn.language.tokenizer` (`build_tokenizer`,
`check_answers`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from unlearn.errors import UserError
from unlearn.hashing import stable_hash
from unlearn.registry import Registry, did_you_mean

Family = Literal["rule", "knowledge"]
Split = Literal["train", "test"]


@dataclass(frozen=True)
class Item:
    """One two-choice question: `answer` is true, `distractor` is the other option (one word each)."""

    task: str
    question: str
    answer: str
    distractor: str

    @property
    def text(self) -> str:
        """The item as pretraining text: the question followed by its true answer."""
        return f"{self.question} {self.answer}"


# What a task's generator returns: its items (the first n_train become train items) and its fact statements.
Made = tuple[list[Item], list[str]]


@dataclass(frozen=True)
class Task:
    """A registered task: its family, its closed answer set, and how to make its items.

    `make(rng, n, entities)` returns n items with distinct questions and the task's fact statements. A rule task
    ignores `entities`; a knowledge task asks one question about each entity, in order, and states each fact.
    `words` are the other words a knowledge task writes (its templates'), which entity names must avoid.
    """

    name: str
    family: Family
    answers: tuple[str, ...]
    make: Callable[[random.Random, int, tuple[str, ...]], Made]
    summary: str
    words: tuple[str, ...] = ()


TASKS: Registry[Task] = Registry("task")
for _name in ("compare", "member", "brackets", "entail", "parity", "last"):
    TASKS.declare(_name, f"unlearn.language.rule_tasks:{_name.upper()}")
for _name in ("city", "colour", "job", "pet"):
    TASKS.declare(_name, f"unlearn.language.knowledge_tasks:{_name.upper()}")


def task_names(family: Family | None = None) -> list[str]:
    """The registered task names (sorted), optionally those of one family only."""
    return [name for name in TASKS.names() if family is None or get_task(name).family == family]


def get_task(name: str) -> Task:
    """The registered task `name`, or a UserError naming the closest task names."""
    if not TASKS.knows(name):
        known = TASKS.names()
        raise UserError(f"unknown tasks-lm task {name!r}{did_you_mean(name, known)}; the tasks are {', '.join(known)}")
    return TASKS.get(name)


def task_rng(seed: int, *purpose: str) -> random.Random:
    """A generator seeded from (seed, purpose): adding a task or resizing one never changes another's stream."""
    return random.Random(":".join(["tasks-lm", str(seed), *purpose]))


CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


def made_up_names(rng: random.Random, count: int, reserved: set[str]) -> tuple[str, ...]:
    """`count` distinct pronounceable nonsense words (two or three syllables), none of them in `reserved`."""
    names: dict[str, None] = {}
    for _ in range(50 * count + 1000):
        if len(names) == count:
            break
        syllables = [rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(2, 3))]
        name = "".join(syllables) + rng.choice(["", "", "n", "r", "s"])
        if name not in reserved:
            names[name] = None
    if len(names) < count:
        raise UserError(f"tasks-lm cannot make {count} distinct entity names; ask for fewer items")
    return tuple(names)


@dataclass(frozen=True)
class TaskSplit:
    """One task of a suite: its train and test items and, for a knowledge task, its fact statements."""

    name: str
    family: Family
    answers: tuple[str, ...]
    train: tuple[Item, ...]
    test: tuple[Item, ...]
    statements: tuple[str, ...]

    def items(self, split: Split) -> tuple[Item, ...]:
        """The items of `split` ('train' or 'test')."""
        if split not in ("train", "test"):
            raise UserError(f"task {self.name!r}: unknown split {split!r} (the splits are train, test)")
        return self.train if split == "train" else self.test


@dataclass(frozen=True)
class Suite:
    """A generated tasks-lm suite: per task its train and test items, the fact statements, and the seed.

    `entities` are the knowledge tasks' entities: the first `n_train` are asked about in train items, the rest
    (`test_entities`) only in test items.
    """

    seed: int
    n_train: int
    n_test: int
    tasks: tuple[TaskSplit, ...]
    entities: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        """The suite's task names, in order."""
        return [split.name for split in self.tasks]

    def task(self, name: str) -> TaskSplit:
        """The task `name` of this suite, or a UserError naming the closest."""
        for split in self.tasks:
            if split.name == name:
                return split
        raise UserError(f"task {name!r} is not in this suite{did_you_mean(name, self.names)}; "
                        f"it has {', '.join(self.names)}")

    @property
    def test_entities(self) -> tuple[str, ...]:
        """The entities whose facts are stated but which no training question asks about."""
        return self.entities[self.n_train:]

    @property
    def statements(self) -> tuple[str, ...]:
        """Every fact statement of every task, in task order."""
        return tuple(statement for split in self.tasks for statement in split.statements)

    def items(self, split: Split) -> Iterator[Item]:
        """The items of `split` of every task, in task order."""
        for task in self.tasks:
            yield from task.items(split)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the suite's whole content (seed, sizes, every item and statement), for cache keys."""
        return stable_hash({
            "seed": self.seed, "n_train": self.n_train, "n_test": self.n_test, "entities": list(self.entities),
            "tasks": [{"name": t.name, "family": t.family, "answers": list(t.answers),
                       "train": [[i.question, i.answer, i.distractor] for i in t.train],
                       "test": [[i.question, i.answer, i.distractor] for i in t.test],
                       "statements": list(t.statements)} for t in self.tasks],
        })


def make_suite(seed: int, n_train: int = 1200, n_test: int = 200, tasks: Sequence[str] | None = None) -> Suite:
    """Generate the suite for `seed`: `n_train` train and `n_test` test items per task (all tasks by default).

    The default sizes leave 1000 forget examples per task with room for the rest. Raises UserError for an unknown
    task name or sizes a task cannot reach.
    """
    for label, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"tasks-lm: {label} must be a positive whole number, not {value!r}")
    chosen = [get_task(name) for name in (task_names() if tasks is None else tasks)]
    if len({task.name for task in chosen}) < len(chosen):
        raise UserError(f"tasks-lm: a task is named twice in {list(tasks or [])}")
    n = n_train + n_test
    made = {task.name: task.make(task_rng(seed, task.name), n, ()) for task in chosen if task.family == "rule"}
    # Entity names must not collide with any other word of the suite, or a question would be ambiguous.
    reserved = {word for items, _ in made.values() for item in items for word in item.question.split()}
    reserved |= {word for task in chosen for word in (*task.answers, *task.words)}
    entities = made_up_names(task_rng(seed, "entities"), n, reserved)
    made |= {task.name: task.make(task_rng(seed, task.name), n, entities)
             for task in chosen if task.family == "knowledge"}
    splits = []
    for task in chosen:
        items, statements = made[task.name]
        splits.append(TaskSplit(task.name, task.family, task.answers, tuple(items[:n_train]), tuple(items[n_train:]),
                                tuple(statements)))
    suite = Suite(seed, n_train, n_test, tuple(splits), entities)
    check_unseen(suite)
    return suite


def check_unseen(suite: Suite) -> None:
    """Raise RuntimeError unless every test item is unseen: its question is no training question of any task, and
    a knowledge test question asks about none of the entities that training questions ask about."""
    train_questions = {item.question for item in suite.items("train")}
    train_entities = set(suite.entities[:suite.n_train])
    for task in suite.tasks:
        if len(task.train) != suite.n_train or len(task.test) != suite.n_test:
            raise RuntimeError(f"task {task.name!r} made {len(task.train)}+{len(task.test)} items, "
                               f"not {suite.n_train}+{suite.n_test}")
        for item in task.test:
            if item.question in train_questions:
                raise RuntimeError(f"task {task.name!r}: the test question {item.question!r} is also a train question")
            if task.family == "knowledge" and train_entities & set(item.question.split()):
                raise RuntimeError(f"task {task.name!r}: the test question {item.question!r} is about a train entity")


def pretraining_text(suite: Suite) -> list[str]:
    """The mixture a model is pretrained on, one line each, in a seeded shuffled order: every task's train items
    as "question answer" (the true answer), and every fact statement."""
    lines = [item.text for item in suite.items("train")] + list(suite.statements)
    task_rng(suite.seed, "pretraining").shuffle(lines)
    return lines


def vocabulary(suite: Suite) -> list[str]:
    """Every word of the suite (questions, answers, distractors and statements of both splits), sorted."""
    words = {word for statement in suite.statements for word in statement.split()}
    for split in ("train", "test"):
        for item in suite.items(split):
            words.update(item.question.split())
            words.update((item.answer, item.distractor))
    return sorted(words)
