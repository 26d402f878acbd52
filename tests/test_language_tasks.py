"""The tasks-lm suite: seeded generation, unseen test items, correct and balanced answers, and its tokenizer."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections import Counter

import pytest

from unlearn.errors import UserError
from unlearn.language.rule_tasks import YES_NO, rule_task
from unlearn.language.tasks import TASKS, check_unseen, get_task, make_suite, pretraining_text, task_names
from unlearn.language.tokenizer import build_tokenizer, check_answers


@pytest.fixture(scope="module")
def suite():
    return make_suite(3, n_train=200, n_test=100)


def test_same_seed_same_suite_other_seed_other_suite(suite):
    again = make_suite(3, n_train=200, n_test=100)
    assert again == suite and again.fingerprint == suite.fingerprint
    assert pretraining_text(again) == pretraining_text(suite)
    other = make_suite(4, n_train=200, n_test=100)
    assert other.fingerprint != suite.fingerprint
    assert other.task("compare").train != suite.task("compare").train
    assert make_suite(3, n_train=201, n_test=100).fingerprint != suite.fingerprint
    # A task's items do not depend on which other tasks the suite holds.
    assert make_suite(3, n_train=200, n_test=100, tasks=["compare"]).task("compare") == suite.task("compare")


def test_at_least_eight_tasks_of_both_families(suite):
    assert suite.names == task_names() and len(suite.names) >= 8
    assert set(task_names("rule")) | set(task_names("knowledge")) == set(task_names())
    assert task_names("rule") and task_names("knowledge")
    for name in task_names():
        task = get_task(name)
        assert task.name == name and suite.task(name).family == task.family and task.summary


def test_test_questions_never_in_training(suite):
    train_questions = {item.question for item in suite.items("train")}
    asked = {line.rsplit(" ", 1)[0] for line in pretraining_text(suite)}  # each line less its last word
    for task in suite.tasks:
        assert len(task.train) == 200 and len(task.test) == 100
        assert len({item.question for item in task.train + task.test}) == 300, task.name  # all distinct
        for item in task.test:
            assert item.question not in train_questions
            assert item.question not in asked, item


def test_check_unseen_refuses_a_leak(suite):
    compare = suite.task("compare")
    leaky = dataclasses.replace(compare, test=(compare.train[0], *compare.test[1:]))
    with pytest.raises(RuntimeError, match="also a train question"):
        check_unseen(dataclasses.replace(suite, tasks=(leaky, *suite.tasks[1:])))
    city = suite.task("city")
    asked = dataclasses.replace(city.test[0], question=city.train[0].question.replace("where", "how"))
    with pytest.raises(RuntimeError, match="about a train entity"):
        check_unseen(dataclasses.replace(suite, tasks=(*suite.tasks[:1], dataclasses.replace(city, test=(
            asked, *city.test[1:])))))


def test_knowledge_test_items_ask_about_stated_but_unasked_entities(suite):
    lines_with: dict[str, list[str]] = {}  # word -> the pretraining lines that hold it
    for line in pretraining_text(suite):
        for word in set(line.split()):
            lines_with.setdefault(word, []).append(line)
    train_words = {word for item in suite.items("train") for word in item.question.split()}
    entities = set(suite.entities)
    assert len(entities) == 300 and not entities & {w for t in suite.tasks if t.family == "rule"
                                                    for i in t.train + t.test for w in i.question.split()}
    for name in task_names("knowledge"):
        task = suite.task(name)
        assert len(task.statements) == 300
        for text in task.statements + tuple(item.question for item in task.train + task.test):
            assert len([word for word in text.split() if word in entities]) == 1, text  # no template word is one
        assert set(get_task(name).words) & set(task.statements[0].split()) and "{entity}" not in get_task(name).words
        for item in task.test:
            (entity,) = [word for word in item.question.split() if word in entities]
            assert entity in suite.test_entities and entity not in train_words
            stated = lines_with[entity]
            statements = set(task.statements)
            facts = [line for line in stated if line in statements]
            assert len(facts) == 1 and item.answer in facts[0].split() and item.distractor not in facts[0].split()
            assert len(stated) == len(task_names("knowledge"))  # only its statements, one per knowledge task


def test_pretraining_text_is_train_items_and_statements(suite):
    lines = pretraining_text(suite)
    expected = [item.text for item in suite.items("train")] + list(suite.statements)
    assert Counter(lines) == Counter(expected) and lines != expected  # all of them, shuffled
    assert all(item.text.endswith(" " + item.answer) for item in suite.items("train"))


def test_answers_are_single_distinct_words_from_the_answer_set(suite):
    for task in suite.tasks:
        for item in task.train + task.test:
            assert item.task == task.name
            assert item.answer != item.distractor and {item.answer, item.distractor} <= set(task.answers)
            assert " " not in item.answer and " " not in item.distractor


def test_labels_are_balanced(suite):
    for task in suite.tasks:
        for split in (task.train, task.test):
            counts = Counter(item.answer for item in split)
            shares = [counts[answer] / len(split) for answer in task.answers]
            if len(task.answers) == 2:
                assert all(0.3 <= share <= 0.7 for share in shares), (task.name, counts)
            else:
                assert len(counts) > len(task.answers) // 2 and max(shares) < 0.3, (task.name, counts)


def reduce_brackets(text: str) -> bool:
    symbols = text.replace(" ", "")
    while "()" in symbols or "[]" in symbols:
        symbols = symbols.replace("()", "").replace("[]", "")
    return not symbols


def entail(question: str) -> bool:
    rules = dict(re.findall(r"every (\w+) is (\w+) \.", question))
    name, kind = re.search(r"\. (\w+) is a (\w+) \.", question).groups()
    asked = re.search(rf"is {name} (\w+) \?$", question).group(1)
    return rules[kind] == asked


ORACLES = {  # each rule task's answer, computed independently from its question text
    "compare": lambda q: "yes" if int(q.split()[1]) > int(q.split()[4]) else "no",
    "member": lambda q: "yes" if q.split()[1] in q.split()[5:-1] else "no",
    "brackets": lambda q: "yes" if reduce_brackets(q.removeprefix("is ").removesuffix(" balanced ?")) else "no",
    "entail": lambda q: "yes" if entail(q) else "no",
    "parity": lambda q: "odd" if q.split()[6:-4].count("x") % 2 else "even",
    "last": lambda q: q.split()[-2],
}


def test_rule_answers_follow_the_rule(suite):
    assert set(ORACLES) == set(task_names("rule"))
    for name, oracle in ORACLES.items():
        for item in suite.task(name).train + suite.task(name).test:
            assert oracle(item.question) == item.answer, item
    last = suite.task("last").test[0]  # the distractor is another letter of the list
    assert last.distractor in last.question.split()[6:-2]


def test_unknown_task_and_bad_sizes_are_user_errors():
    with pytest.raises(UserError, match=r"unknown tasks-lm task 'compar' \(did you mean compare"):
        make_suite(0, n_train=4, n_test=2, tasks=["compar"])
    with pytest.raises(UserError, match=r"'colur' is not in this suite \(did you mean colour"):
        make_suite(0, n_train=4, n_test=2).task("colur")
    with pytest.raises(UserError, match="n_train must be a positive whole number"):
        make_suite(0, n_train=0)
    with pytest.raises(UserError, match="named twice"):
        make_suite(0, n_train=4, n_test=2, tasks=["job", "job"])


def test_a_task_too_small_for_the_sizes_is_a_user_error():
    small = rule_task("tiny", YES_NO, "two questions in all")(lambda rng, answer: (f"{answer} ?", "x"))
    TASKS.register("tiny")(small)
    try:
        assert len(make_suite(0, n_train=1, n_test=1, tasks=["tiny"]).task("tiny").test) == 1
        with pytest.raises(UserError, match="task 'tiny' cannot make 3 distinct questions"):
            make_suite(0, n_train=2, n_test=1, tasks=["tiny"])
    finally:
        TASKS.remove("tiny")


def test_tokenizer_round_trips_and_separates_every_answer_pair(suite):
    tokenizer = build_tokenizer(suite)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id and tokenizer.unk_token_id is not None
    for task in suite.tasks:
        item = task.test[0]
        ids = tokenizer(item.text)["input_ids"]
        assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == item.text
        for answer in task.answers:
            (token,) = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
            assert token != tokenizer.unk_token_id
    check_answers(tokenizer, suite.items("test"))
    assert tokenizer("zzz unheard")["input_ids"] == [tokenizer.unk_token_id] * 2


def test_check_answers_refuses_a_tokenizer_that_cannot_tell_answers_apart(suite):
    narrow = build_tokenizer(make_suite(0, n_train=4, n_test=2, tasks=["compare"]))  # knows no city
    check_answers(narrow, make_suite(1, n_train=4, n_test=2, tasks=["compare"]).items("test"))
    item = suite.task("city").test[0]
    with pytest.raises(UserError, match=rf"task 'city': .*'{item.answer}' and '{item.distractor}'.*unknown token"):
        check_answers(narrow, [item])

    class OneId:  # a tokenizer that encodes every word alike
        unk_token_id = 0

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [7]}

    with pytest.raises(UserError, match=r"task 'city': .*apart as continuations \(both encode to \[7\]\)"):
        check_answers(OneId(), [item])


def test_importing_the_tasks_stays_light():
    code = ("import sys, unlearn.language.tasks, unlearn.language.tokenizer; "
            "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
