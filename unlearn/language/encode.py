"""Encoding tasks-lm items and pretraining text as `TensorData`, in one fixed tensor layout.

Every sample is x[n] of shape [C, 2, L] (int64): C options (2 for a two-choice item, 1 for a text line), and for
each option two rows of L positions:

- x[n, c, 0, :] are the token ids of the option's sequence, right-padded with the tokenizer's pad id;
- x[n, c, 1, :] is each position's role: `CONTEXT` (0, conditioned on and not scored), `SCORED` (1, the tokens
  whose log-likelihood is the option's score or the training loss) or `PADDING` (-1, masked out of attention).

A two-choice item's option c is "question option_c": the question's ids (role 0) followed by the ids of the
continuation " option_c" with its leading space (role 1), as lm-evaluation-harness scores multiple choice by the
log-likelihood of the continuation after the context. The two are encoded separately, so a BPE tokenizer never
merges the last word of the question with the answer. No BOS token is prepended: the first token is context.

y[n] is the option that holds the TRUE answer. Which option that is, is drawn per item from a generator seeded by
`seed` (a fair coin), never always 0: `argmax` returns the first of equal logits, so a model that scores both
options the same (an untrained one, or one that ignores the answer) would get every item right if the true answer
were always option 0. With a random position it gets about half, which is chance.

A text line has one option: role 0 for its first token (nothing predicts it) and role 1 for every later one, so
the role-1 positions carry the ordinary causal-LM loss; y is all zeros.

The transformers tokenizer is imported by the caller (`unlearn.language.tokenizer.build_tokenizer`, or a
checkpoint's own); this module needs only torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.language.tasks import Item
from unlearn.language.tokenizer import continuation_ids
from unlearn.seeding import generator

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CONTEXT, SCORED, PADDING = 0, 1, -1
"""The roles of a position (row 1 of each option)."""

Pieces = list[tuple[list[int], list[int]]]
"""Per option of a sample: its token ids and their roles, before padding."""


def encode_items(
    items: Sequence[Item], tokenizer: PreTrainedTokenizerBase, seed: int, *, length: int | None = None,
    max_length: int | None = None,
) -> TensorData:
    """Two-choice items as TensorData: x [N, 2, 2, L], y [N] the option (0 or 1) that holds the true answer.

    The true answer's option is drawn per item from a generator seeded by (`seed`, "answer-position"), so equal
    arguments give equal data. `length` is L (default: the longest encoded option); `max_length` is the model's
    context. An option longer than either raises UserError.
    """
    coin = torch.randint(0, 2, (len(items),), generator=generator(seed, "answer-position"))
    questions = token_ids(tokenizer, [item.question for item in items])
    continuations: dict[str, list[int]] = {}
    samples: list[Pieces] = []
    for item, question, true_position in zip(items, questions, coin.tolist(), strict=True):
        options = [item.distractor, item.distractor]
        options[true_position] = item.answer
        pieces = []
        for option in options:
            if option not in continuations:
                continuations[option] = continuation_ids(tokenizer, option)
            answer = continuations[option]
            pieces.append((question + answer, [CONTEXT] * len(question) + [SCORED] * len(answer)))
        samples.append(pieces)
    described = [f"task {item.task!r}: {item.question!r}" for item in items]
    return TensorData.of(pad(samples, tokenizer, length, max_length, described), coin)


def encode_text(
    lines: Sequence[str], tokenizer: PreTrainedTokenizerBase, *, length: int | None = None,
    max_length: int | None = None,
) -> TensorData:
    """Text lines (pretraining) as TensorData: x [N, 1, 2, L] (role 1 for every token after the first), y zeros.

    `length` is L (default: the longest encoded line); `max_length` is the model's context. A line longer than
    either, or one that encodes to no tokens, raises UserError.
    """
    samples: list[Pieces] = []
    for line, ids in zip(lines, token_ids(tokenizer, lines), strict=True):
        if not ids:
            raise UserError(f"the text line {line!r} encodes to no tokens")
        samples.append([(ids, [CONTEXT] + [SCORED] * (len(ids) - 1))])
    return TensorData.of(pad(samples, tokenizer, length, max_length, [repr(line) for line in lines]),
                         torch.zeros(len(lines), dtype=torch.long))


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> list[list[int]]:
    """The ids of each text, without special tokens (one batched call to the fast tokenizer)."""
    texts = list(texts)
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id padding positions hold: the pad token's, else the EOS token's (GPT-2 has no pad), else 0.

    Which id it is never matters to a score: padding is masked out of attention and never scored.
    """
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def pad(
    samples: list[Pieces], tokenizer: PreTrainedTokenizerBase, length: int | None, max_length: int | None,
    described: Sequence[str],
) -> torch.Tensor:
    """The samples right-padded to one length, as an int64 tensor [N, C, 2, L]; UserError for one too long."""
    longest = max((len(ids) for pieces in samples for ids, _ in pieces), default=1)
    limits = [v for v in (length, max_length) if v is not None]
    limit = min(limits) if limits else None
    if limit is not None and longest > limit:
        where = next(i for i, pieces in enumerate(samples) if any(len(ids) == longest for ids, _ in pieces))
        what = "the model's context" if limit == max_length else "the length asked for"
        raise UserError(f"{described[where]} encodes to {longest} tokens, longer than {what} ({limit})")
    width = length or longest
    options = max((len(pieces) for pieces in samples), default=1)
    x = torch.full((len(samples), options, 2, width), pad_id(tokenizer), dtype=torch.long)
    x[:, :, 1, :] = PADDING
    for n, pieces in enumerate(samples):
        for c, (ids, roles) in enumerate(pieces):
            x[n, c, 0, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            x[n, c, 1, :len(roles)] = torch.tensor(roles, dtype=torch.long)
    return x
