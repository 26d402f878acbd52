"""The rule tasks of tasks-lm: one shared rule decides every answer, so the task has low input diversity.

Each task is a sampler `sample(rng, answer) -> (question, distractor)` that writes a fresh question whose true
answer is `answer`; `rule_task` turns it into a registered `Task` that cycles the true answer through the answer
set (so labels are balanced) and keeps only distinct questions. Four of the tasks answer yes or no, `parity`
answers even or odd, and `last` answers one of twelve letters: random-label forgetting of one yes/no task may
reach the others through their shared answer words as well as through a shared rule.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from unlearn.errors import UserError
from unlearn.language.tasks import Item, Made, Task

Sampler = Callable[[random.Random, str], tuple[str, str]]
YES_NO = ("yes", "no")
LETTERS = ("b", "c", "d", "f", "g", "h", "k", "m", "p", "s", "t", "z")  # not "a", "o", "x": words elsewhere
KINDS = ("wug", "dax", "blick", "fep", "zup", "lorp", "toma", "gazzer")
PROPERTIES = ("tall", "short", "loud", "quiet", "round", "flat", "soft", "hard")
NAMES = ("tom", "ann", "bob", "eve", "joe", "kim", "sam", "liz", "ned", "una")
OPEN_OF = {")": "(", "]": "["}


def rule_task(name: str, answers: tuple[str, ...], summary: str) -> Callable[[Sampler], Task]:
    """Make a rule `Task` from a sampler: n distinct questions, the true answers cycling through `answers`."""

    def wrap(sample: Sampler) -> Task:
        def make(rng: random.Random, n: int, entities: tuple[str, ...]) -> Made:
            items: dict[str, Item] = {}
            for _ in range(20 * n + 1000):
                if len(items) == n:
                    break
                answer = answers[len(items) % len(answers)]
                question, distractor = sample(rng, answer)
                items.setdefault(question, Item(name, question, answer, distractor))
            if len(items) < n:
                raise UserError(f"tasks-lm task {name!r} cannot make {n} distinct questions; ask for fewer items")
            made = list(items.values())
            rng.shuffle(made)
            return made, []

        return Task(name, "rule", answers, make, summary)

    return wrap


def other(answers: tuple[str, ...], answer: str) -> str:
    """The other answer of a two-answer set."""
    return answers[1 - answers.index(answer)]


@rule_task("compare", YES_NO, "is one number (0-99) larger than another")
def COMPARE(rng: random.Random, answer: str) -> tuple[str, str]:
    a, b = rng.sample(range(100), 2)
    if (a > b) != (answer == "yes"):
        a, b = b, a
    return f"is {a} larger than {b} ?", other(YES_NO, answer)


@rule_task("member", YES_NO, "is a letter in a listed set of three to six letters")
def MEMBER(rng: random.Random, answer: str) -> tuple[str, str]:
    listed = rng.sample(LETTERS, rng.randint(3, 6))
    query = rng.choice(listed if answer == "yes" else [letter for letter in LETTERS if letter not in listed])
    return f"is {query} in the list {' '.join(listed)} ?", other(YES_NO, answer)


def balanced(symbols: list[str]) -> bool:
    """Whether a string of ( ) [ ] is balanced: every bracket closed by its own kind, in order."""
    stack: list[str] = []
    for symbol in symbols:
        if symbol in OPEN_OF:
            if not stack or stack.pop() != OPEN_OF[symbol]:
                return False
        else:
            stack.append(symbol)
    return not stack


def random_balanced(rng: random.Random, pairs: int) -> list[str]:
    """A random balanced string of `pairs` bracket pairs, each pair round or square."""
    while True:  # a shuffle of n opens and n closes is a valid nesting with probability 1/(n+1)
        shape = ["open"] * pairs + ["close"] * pairs
        rng.shuffle(shape)
        depth = 0
        for step in shape:
            depth += 1 if step == "open" else -1
            if depth < 0:
                break
        else:
            break
    symbols, stack = [], []
    for step in shape:
        if step == "open":
            stack.append(rng.choice("(["))
            symbols.append(stack[-1])
        else:
            symbols.append(")" if stack.pop() == "(" else "]")
    return symbols


@rule_task("brackets", YES_NO, "is a string of three to six ( ) [ ] pairs balanced")
def BRACKETS(rng: random.Random, answer: str) -> tuple[str, str]:
    symbols = random_balanced(rng, rng.randint(3, 6))
    while answer == "no" and balanced(symbols):
        # A near miss: one bracket of the other kind (counts stay equal), or two brackets swapped.
        i, j = rng.sample(range(len(symbols)), 2)
        if rng.random() < 0.5:
            symbols[i] = {"(": "[", "[": "(", ")": "]", "]": ")"}[symbols[i]]
        else:
            symbols[i], symbols[j] = symbols[j], symbols[i]
    return f"is {' '.join(symbols)} balanced ?", other(YES_NO, answer)


@rule_task("entail", YES_NO, "does a property follow from two rules and a membership premise")
def ENTAIL(rng: random.Random, answer: str) -> tuple[str, str]:
    # "yes" when the asked property is the one the named kind has; "no" when it is the other rule's property
    # (each kind has exactly one of the properties here, so "no" means "does not follow").
    kind, other_kind = rng.sample(KINDS, 2)
    prop, other_prop = rng.sample(PROPERTIES, 2)
    rules = [f"every {kind} is {prop} .", f"every {other_kind} is {other_prop} ."]
    rng.shuffle(rules)
    name = rng.choice(NAMES)
    asked = prop if answer == "yes" else other_prop
    return f"{' '.join(rules)} {name} is a {kind} . is {name} {asked} ?", other(YES_NO, answer)


EVEN_ODD = ("even", "odd")


@rule_task("parity", EVEN_ODD, "is the number of x in a string of five to twelve x and o even or odd")
def PARITY(rng: random.Random, answer: str) -> tuple[str, str]:
    symbols = [rng.choice("xo") for _ in range(rng.randint(5, 12))]
    if symbols.count("x") % 2 != EVEN_ODD.index(answer):
        i = rng.randrange(len(symbols))
        symbols[i] = "o" if symbols[i] == "x" else "x"
    return f"is the number of x in {' '.join(symbols)} even or odd ?", other(EVEN_ODD, answer)


@rule_task("last", LETTERS, "which letter ends a list of three to six letters (the distractor is another of them)")
def LAST(rng: random.Random, answer: str) -> tuple[str, str]:
    before = rng.sample([letter for letter in LETTERS if letter != answer], rng.randint(2, 5))
    return f"what is the last letter of {' '.join([*before, answer])} ?", rng.choice(before)
