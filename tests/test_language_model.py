"""The language kind's model and data: the encoded layout, two-choice scores, seeded building and loading (or
refusing) checkpoint directories (tests/test_language_kind.py trains one until it knows a task). Nothing is
downloaded."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from unlearn.errors import UserError
from unlearn.language.encode import CONTEXT, PADDING, SCORED, encode_items, encode_text
from unlearn.language.model import LMBlueprint, lm_loss
from unlearn.language.tasks import make_suite, pretraining_text
from unlearn.language.tokenizer import build_tokenizer, continuation_ids


@pytest.fixture(scope="module")
def suite():
    return make_suite(0, n_train=200, n_test=100, tasks=["compare", "city"])


@pytest.fixture(scope="module")
def tokenizer(suite):
    return build_tokenizer(suite)


@pytest.fixture(scope="module")
def blueprint(tokenizer):
    return LMBlueprint(vocab_size=len(tokenizer), n_layer=2, n_head=2, n_embd=32, n_positions=32,
                       pad_id=tokenizer.pad_token_id)


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_two_choice_layout(suite, tokenizer):
    items = suite.task("city").train[:20] + suite.task("compare").train[:20]
    data = encode_items(items, tokenizer, seed=1)
    longest = max(len(ids_of(tokenizer, item.question)) + 1 for item in items)
    assert data.x.shape == (40, 2, 2, longest) and data.x.dtype == torch.int64 and data.y.tolist() != [0] * 40
    for n, item in enumerate(items):
        question = ids_of(tokenizer, item.question)
        for c in (0, 1):
            option = item.answer if c == data.y[n] else item.distractor
            ids = question + continuation_ids(tokenizer, option)
            row, roles = data.x[n, c, 0].tolist(), data.x[n, c, 1].tolist()
            assert row == ids + [tokenizer.pad_token_id] * (longest - len(ids))
            assert roles == [CONTEXT] * len(question) + [SCORED] + [PADDING] * (longest - len(ids))
    wider = encode_items(items, tokenizer, seed=1, length=longest + 3)
    assert torch.equal(wider.x[..., :longest], data.x) and (wider.x[:, :, 1, longest:] == PADDING).all()


def test_true_answer_position_is_balanced_and_seeded(suite, tokenizer):
    items = suite.task("compare").train
    y = encode_items(items, tokenizer, seed=5).y
    assert 0.3 <= y.float().mean().item() <= 0.7
    # A model that scores both options the same picks option 0 (argmax of equal logits): chance, not 100 %.
    assert 0.3 <= (torch.zeros(len(items), 2).argmax(1) == y).float().mean().item() <= 0.7
    assert torch.equal(encode_items(items, tokenizer, seed=5).y, y)
    assert not torch.equal(encode_items(items, tokenizer, seed=6).y, y)


def test_text_layout_and_too_long_lines(suite, tokenizer):
    lines = pretraining_text(suite)[:30]
    data = encode_text(lines, tokenizer)
    lengths = [len(ids_of(tokenizer, line)) for line in lines]
    assert data.x.shape == (30, 1, 2, max(lengths)) and data.y.tolist() == [0] * 30
    for n, size in enumerate(lengths):
        assert data.x[n, 0, 0, :size].tolist() == ids_of(tokenizer, lines[n])
        assert data.x[n, 0, 1].tolist() == [CONTEXT] + [SCORED] * (size - 1) + [PADDING] * (max(lengths) - size)
    with pytest.raises(UserError, match="longer than the model's context") as caught:
        encode_text(lines, tokenizer, max_length=max(lengths) - 1)
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="longer than the length asked for"):
        encode_items(suite.task("city").train, tokenizer, seed=0, length=2)


def direct_scores(model, tokenizer, items, y):
    """Each option's summed log-likelihood of its answer token, from the wrapped LM's logits on the bare sequence."""
    scores = torch.zeros(len(items), 2)
    for n, item in enumerate(items):
        question = ids_of(tokenizer, item.question)
        for c in (0, 1):
            answer = continuation_ids(tokenizer, item.answer if c == y[n] else item.distractor)
            ids = torch.tensor([question + answer])
            log_probs = torch.log_softmax(model.lm(input_ids=ids).logits[0], dim=-1)
            scores[n, c] = sum(log_probs[len(question) + k - 1, token] for k, token in enumerate(answer))
    return scores


def test_scores_are_continuation_log_likelihoods_and_ignore_padding(suite, tokenizer, blueprint):
    model = blueprint.build(0).eval()
    items = [suite.task("city").train[0], suite.task("compare").train[0], suite.task("compare").train[1]]
    data = encode_items(items, tokenizer, seed=0)
    with torch.no_grad():
        scores = model(data.x)
        assert scores.shape == (3, 2)
        torch.testing.assert_close(scores, direct_scores(model, tokenizer, items, data.y), rtol=1e-5, atol=1e-5)
        padded = encode_items(items, tokenizer, seed=0, length=data.x.shape[-1] + 7)
        torch.testing.assert_close(model(padded.x), scores, rtol=1e-5, atol=1e-5)


def test_lm_loss_is_the_causal_lm_loss_without_padding(suite, tokenizer, blueprint):
    model = blueprint.build(0).eval()
    data = encode_text(pretraining_text(suite)[:8], tokenizer)
    ids, roles = data.x[:, 0, 0], data.x[:, 0, 1]
    labels = torch.where(roles == PADDING, -100, ids)  # transformers' own loss, padding ignored
    with torch.no_grad():
        expected = model.lm(input_ids=ids, attention_mask=(roles != PADDING).long(), labels=labels).loss
        torch.testing.assert_close(lm_loss(model, data.x, data.y), expected, rtol=1e-5, atol=1e-6)


def test_same_seed_same_weights_other_tags_other_weights(blueprint):
    rng = torch.get_rng_state()
    first, again, other = blueprint.build(3), blueprint.build(3), blueprint.build(3, "oracle")
    assert torch.equal(torch.get_rng_state(), rng)
    weights = [model.state_dict() for model in (first, again, other)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert not torch.equal(weights[0]["lm.transformer.wte.weight"], weights[2]["lm.transformer.wte.weight"])
    assert pickle.loads(pickle.dumps(blueprint)) == blueprint


def accuracy(model, data):
    with torch.no_grad():
        return (model.eval()(data.x).argmax(1) == data.y).float().mean().item()


def test_checkpoint_gives_the_same_scores(suite, tokenizer, blueprint, tmp_path):
    model = blueprint.build(1).eval()
    model.lm.save_pretrained(tmp_path / "ckpt")
    loaded = LMBlueprint(checkpoint=str(tmp_path / "ckpt")).build(7).eval()
    assert loaded.context_length == blueprint.n_positions
    data = encode_items(suite.task("compare").test[:10], tokenizer, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(data.x), model(data.x))


def refused(directory, match):
    with pytest.raises(UserError, match=match) as caught:
        LMBlueprint(checkpoint=str(directory)).build(0)
    assert str(directory) in str(caught.value) and "\n" not in str(caught.value)


def test_directories_without_a_causal_lm_are_refused(blueprint, tmp_path):
    from transformers import BertConfig, BertLMHeadModel, GPT2Config, T5Config

    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "no config.json")
    refused(tmp_path / "absent", "not a local directory")
    (tmp_path / "bogus").mkdir()
    (tmp_path / "bogus" / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    refused(tmp_path / "bogus", "config cannot be read")
    T5Config(d_model=16, d_ff=16, num_layers=1, num_heads=2, d_kv=8).save_pretrained(tmp_path / "t5")
    refused(tmp_path / "t5", "'t5' model, which is no causal language model")
    GPT2Config(vocab_size=20, n_layer=1, n_head=2, n_embd=16).save_pretrained(tmp_path / "no-weights")
    refused(tmp_path / "no-weights", "weights cannot be loaded")
    model = blueprint.build(0)
    model.lm.save_pretrained(tmp_path / "other-shapes")
    GPT2Config(vocab_size=blueprint.vocab_size, n_layer=2, n_head=2, n_embd=16).save_pretrained(tmp_path / "other-shapes")
    refused(tmp_path / "other-shapes", "weights cannot be loaded")
    model.lm.save_pretrained(tmp_path / "fewer-layers")
    GPT2Config(vocab_size=blueprint.vocab_size, n_layer=3, n_head=2, n_embd=32, n_positions=32).save_pretrained(
        tmp_path / "fewer-layers")
    refused(tmp_path / "fewer-layers", "do not fit its config")
    # BERT has a causal-LM head class, but without is_decoder it attends to later tokens.
    bert = BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    BertLMHeadModel(bert).save_pretrained(tmp_path / "bert")
    refused(tmp_path / "bert", "predictions depend on later tokens")
    with pytest.raises(UserError, match="vocab_size"):
        LMBlueprint()
