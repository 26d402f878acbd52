"""The knowledge tasks of tasks-lm: the answer is an item-specific fact, taught by a statement.

Every entity (a made-up name, `Suite.entities`) gets one value per knowledge task, e.g. a home city. The fact is
stated in the pretraining text ("the city of zorbin is mibu .") for every entity; the question ("where does
zorbin live ?") is phrased differently, and only questions about the train entities are in the pretraining text.
A test item therefore asks about a fact the model has read but has never been asked about, so answering it
needs the fact recalled from the statement, not a rule.
"""

from __future__ import annotations

import random

from unlearn.language.tasks import Item, Made, Task

CITIES = ("mibu", "tarsa", "kelon", "duvra", "pesko", "norim", "falu", "zenta")
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black")
JOBS = ("baker", "farmer", "doctor", "pilot", "teacher", "singer", "tailor", "miner")
PETS = ("cat", "dog", "horse", "goat", "rabbit", "parrot", "mouse", "snake")


def knowledge_task(name: str, values: tuple[str, ...], statement: str, question: str) -> Task:
    """A knowledge `Task`: each entity gets a value (each value equally often, in a seeded order), stated by
    `statement` and asked by `question` (format strings over `entity` and `value`); the distractor is another
    value drawn at random."""

    def make(rng: random.Random, n: int, entities: tuple[str, ...]) -> Made:
        assigned = [values[i % len(values)] for i in range(len(entities))]
        rng.shuffle(assigned)
        items, statements = [], []
        for entity, value in zip(entities, assigned, strict=True):
            distractor = rng.choice([v for v in values if v != value])
            items.append(Item(name, question.format(entity=entity), value, distractor))
            statements.append(statement.format(entity=entity, value=value))
        return items, statements

    summary = f"{question.format(entity='<entity>')} (one of {len(values)} values, stated as " \
              f"{statement.format(entity='<entity>', value='<value>')!r})"
    words = tuple(sorted(set(statement.split() + question.split()) - {"{entity}", "{value}"}))
    return Task(name, "knowledge", values, make, summary, words)


CITY = knowledge_task("city", CITIES, "the city of {entity} is {value} .", "where does {entity} live ?")
COLOUR = knowledge_task("colour", COLOURS, "the favourite colour of {entity} is {value} .",
                        "what colour does {entity} like ?")
JOB = knowledge_task("job", JOBS, "{entity} works as a {value} .", "what is the job of {entity} ?")
PET = knowledge_task("pet", PETS, "{entity} owns a {value} .", "which animal does {entity} keep ?")
