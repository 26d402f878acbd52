"""The tasks-lm tokenizer (one token per word of the suite) and the check that a tokenizer can score an item.

`build_tokenizer` imports `tokenizers` and `transformers` only when called, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from unlearn.errors import UserError
from unlearn.language.tasks import Item, Suite, vocabulary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"


def build_tokenizer(suite: Suite) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the suite's vocabulary, split on whitespace, as a transformers fast tokenizer.

    Ids 0, 1 and 2 are the special tokens <pad>, <unk> and <eos>; the suite's words follow in sorted order, so
    equal suites give equal tokenizers. A word outside the suite encodes as <unk>.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [PAD, UNK, EOS, *vocabulary(suite)]
    model = models.WordLevel(vocab={word: index for index, word in enumerate(words)}, unk_token=UNK)
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK, eos_token=EOS)


def continuation_ids(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """The ids of " answer" as a continuation of a question (a leading space, no special tokens)."""
    return list(tokenizer(" " + answer, add_special_tokens=False)["input_ids"])


def check_answers(tokenizer: PreTrainedTokenizerBase, items: Iterable[Item]) -> None:
    """Raise UserError (one line naming the task and both answers) unless the tokenizer encodes each item's answer
    and distractor as distinct continuations: neither empty, neither containing the unknown token, ids not equal.

    Each (task, answer, distractor) triple is checked once, so a whole suite is checked quickly.
    """
    unk = tokenizer.unk_token_id
    seen: set[tuple[str, str, str]] = set()
    for item in items:
        key = (item.task, item.answer, item.distractor)
        if key in seen:
            continue
        seen.add(key)
        answer, distractor = continuation_ids(tokenizer, item.answer), continuation_ids(tokenizer, item.distractor)
        if not answer or not distractor:
            problem = "one encodes to no tokens"
        elif unk is not None and (unk in answer or unk in distractor):
            problem = "one contains the unknown token"
        elif answer == distractor:
            problem = f"both encode to {answer}"
        else:
            continue
        raise UserError(f"task {item.task!r}: the tokenizer cannot tell the answers {item.answer!r} and "
                        f"{item.distractor!r} apart as continuations ({problem})")
