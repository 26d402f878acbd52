"""A tiny two-choice GPT-2 and its data, for unit tests of methods on language models (nothing is downloaded)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.methods import Track, UnlearnRequest
from unlearn.spec import Recipe
from unlearn.train import label_log_likelihood


def tiny_lm(n_layer: int = 2) -> tuple[nn.Module, TensorData, TensorData]:
    """(an untrained GPT-2 `TwoChoiceLM` with `n_layer` blocks, the 40 training items of task compare, those of city)."""
    from unlearn.language.encode import encode_items
    from unlearn.language.model import LMBlueprint
    from unlearn.language.tasks import make_suite
    from unlearn.language.tokenizer import build_tokenizer

    suite = make_suite(0, n_train=40, n_test=10, tasks=["compare", "city"])
    tokenizer = build_tokenizer(suite)
    blueprint = LMBlueprint(vocab_size=len(tokenizer), n_layer=n_layer, n_head=2, n_embd=32, n_positions=32,
                            pad_id=tokenizer.pad_token_id)
    compare, city = (encode_items(suite.task(name).train, tokenizer, seed=0) for name in ("compare", "city"))
    return blueprint.build(0), compare, city


def lm_request(model: nn.Module, forget: TensorData, retain: TensorData | None, track: Track,
               seed: int = 0) -> UnlearnRequest:
    """An UnlearnRequest on CPU for a two-choice language model: a private copy of `model`, two options."""
    return UnlearnRequest(
        model=copy.deepcopy(model), forget=forget, retain=retain, num_classes=2, device=torch.device("cpu"),
        seed=seed, recipe=Recipe(epochs=1, batch_size=8, lr=1e-3), new_model=lambda *tags: copy.deepcopy(model),
        track=track, train_recipe=lambda model, data: model,
    )


def answer_log_likelihood(model: nn.Module, data: TensorData) -> float:
    """The mean over items of log p(true answer | question)."""
    model.eval()
    with torch.no_grad():
        return label_log_likelihood(model, data.x, data.y).mean().item()
