"""GS-LoRA and GS-LoRA++ on a small ViT trained on digits: forgetting two classes from 4-shot retain data, only the
FFN weights changing, the reported adapter groups, bad configurations, and determinism; GS-LoRA on a tiny GPT-2 and
the default FFN targets of other language models."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_request
from tiny_lm import answer_log_likelihood, lm_request, tiny_lm

from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.harness import Classification
from unlearn.methods import METHODS, Track, make_hparams
from unlearn.methods.gs_lora import FFN_LAYERS, FFN_LINEARS, block_of, targeted_linears
from unlearn.spec import Recipe
from unlearn.train import train_with_recipe

FORGET = (3, 5)
SHOTS = 4
FAST = {"epochs": 30, "warmup_epochs": 6}
"""Few epochs (one optimiser step each with 32 retain samples), the reference's other defaults."""


@pytest.fixture(scope="module")
def vit_task(digits_spec, digits_kind) -> Classification:
    spec = digits_spec.model_copy(update={"model": "vit"})
    return Classification(spec, digits_kind.dataset, torch.device("cpu"))


@pytest.fixture(scope="module")
def original(vit_task):
    """A quickly trained 4-block ViT (about 86 % test accuracy), in eval mode."""
    model = train_with_recipe(vit_task.new_model(0), vit_task.train, Recipe(epochs=8, batch_size=32, lr=0.03), 0)
    return model.eval()


@pytest.fixture(scope="module")
def data(vit_task):
    """(forget: every training image of classes 3 and 5, retain: 4 shots of each other class)."""
    train = vit_task.train
    in_forget = torch.isin(train.y, torch.tensor(FORGET))
    gen = torch.Generator().manual_seed(0)
    shots = []
    for c in sorted(set(range(10)) - set(FORGET)):
        positions = torch.nonzero(train.y == c).flatten()
        shots.append(positions[torch.randperm(len(positions), generator=gen)[:SHOTS]])
    return train.where(in_forget), train.subset(torch.cat(shots))


def accuracy(model, data: TensorData) -> float:
    model.eval()
    with torch.no_grad():
        return 100 * float((model(data.x).argmax(1) == data.y).float().mean())


def split_accuracies(vit_task, model) -> tuple[float, float]:
    """(accuracy on the forgotten classes' test images, on the other classes' test images)."""
    in_forget = torch.isin(vit_task.test.y, torch.tensor(FORGET))
    return accuracy(model, vit_task.test.where(in_forget)), accuracy(model, vit_task.test.where(~in_forget))


def run(name, vit_task, original, data, seed=0, model=None, **hparams):
    """(unlearned model, request) for method `name` with `hparams` on a copy of `model` (default: the original)."""
    forget, retain = data
    request = make_request(vit_task, copy.deepcopy(model if model is not None else original), forget, retain, seed=seed)
    cls = METHODS.get(name)
    return cls(make_hparams(cls, name, hparams)).unlearn(request), request


@pytest.fixture(scope="module")
def gs_lora(vit_task, original, data):
    return run("gs-lora", vit_task, original, data, **FAST)


def ffn_weight(key: str) -> bool:
    return any(key.endswith(f".mlp.{i}.weight") for i in (0, 3))


def test_gs_lora_forgets_the_classes_and_keeps_the_others(vit_task, original, gs_lora):
    forget_before, remain_before = split_accuracies(vit_task, original)
    forget_after, remain_after = split_accuracies(vit_task, gs_lora[0])
    assert forget_before > 70 and remain_before > 75, "the original ViT should be decent"
    assert forget_after < forget_before - 50
    assert remain_after > remain_before - 10


def test_only_the_ffn_weights_change_and_the_model_is_plain(original, gs_lora):
    model, _ = gs_lora
    before, after = original.state_dict(), model.state_dict()
    assert type(model) is type(original)
    assert list(after) == list(before) and all(after[k].shape == before[k].shape for k in before)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for k in before if ffn_weight(k)}  # every block's FFN weights moved, nothing else
    assert all(p.requires_grad for p in model.parameters())
    assert not any("lora" in name for name, _ in model.named_modules())


def test_the_run_reports_its_adapter_groups(vit_task, original, data, gs_lora):
    info = gs_lora[1].info
    assert 0 < info["trainable_fraction"] < 0.2
    assert info["adapter_groups"] == 4 and len(info["group_norms"]) == 4 and len(info["block_updates"]) == 4
    assert 0 <= info["nonzero_groups"] <= 4
    dense = run("gs-lora", vit_task, original, data, epochs=15, warmup_epochs=0, alpha=0.0)[1].info
    sparse = run("gs-lora", vit_task, original, data, epochs=15, warmup_epochs=0, alpha=1000.0)[1].info
    assert sparse["nonzero_groups"] < dense["nonzero_groups"]
    assert max(sparse["group_norms"]) < min(dense["group_norms"])


def test_a_second_task_starts_from_fresh_adapters_on_the_merged_model(vit_task, original, data, gs_lora):
    train = vit_task.train
    forget_7 = train.where(train.y == 7)
    retain = data[1].where(data[1].y != 7)
    second, request = run("gs-lora", vit_task, original, (forget_7, retain), model=gs_lora[0], epochs=5, warmup_epochs=0)
    assert list(second.state_dict()) == list(original.state_dict())
    assert request.info["adapter_groups"] == 4


@pytest.mark.parametrize("name", ["gs-lora", "gs-lora-plus"])
def test_bad_configurations_are_user_errors(name, vit_task):
    cls = METHODS.get(name)
    model = vit_task.new_model(0)
    cls().check(model)
    with pytest.raises(UserError, match=r"rank=65 exceeds the width 64 of body\.encoder\.layers\.encoder_layer_0\.mlp\.0"):
        cls(make_hparams(cls, name, {"rank": 65})).check(model)
    with pytest.raises(UserError, match="matches no layer"):
        cls(make_hparams(cls, name, {"target_modules": r".*no_such_layer"})).check(model)
    with pytest.raises(UserError, match="not a linear layer"):
        cls(make_hparams(cls, name, {"target_modules": r"body\.encoder\.layers\.encoder_layer_0\.mlp"})).check(model)
    with pytest.raises(UserError, match="not a regular expression"):
        cls(make_hparams(cls, name, {"target_modules": "mlp.("})).check(model)


def test_gs_lora_plus_adds_a_prototype_term_and_forgets_as_well(vit_task, original, data, gs_lora):
    plus, request = run("gs-lora-plus", vit_task, original, data, **FAST)
    base = gs_lora[0].state_dict()
    assert any(not torch.equal(base[k], v) for k, v in plus.state_dict().items())
    assert request.info["bnd_pro"] > 0 and request.info["adapter_groups"] == 4
    forget_before, remain_before = split_accuracies(vit_task, original)
    forget_after, remain_after = split_accuracies(vit_task, plus)
    assert forget_after < forget_before - 50
    assert remain_after > remain_before - 10


def test_the_same_seed_gives_the_same_weights(vit_task, original, data, gs_lora):
    again, _ = run("gs-lora", vit_task, original, data, **FAST)
    first = gs_lora[0].state_dict()
    assert all(torch.equal(first[k], v) for k, v in again.state_dict().items())
    short = [run("gs-lora", vit_task, original, data, seed=seed, epochs=2)[0].state_dict() for seed in (0, 1)]
    assert any(not torch.equal(short[0][k], v) for k, v in short[1].items())


def test_gs_lora_adapts_only_a_language_models_ffn_and_its_forget_term_pushes():
    """On a 3-block GPT-2 TwoChoiceLM: each block's mlp.c_fc and mlp.c_proj (transformers' Conv1D) change, nothing
    else; the merged model is the plain model with the original keys; with a bound above the forget answers' NLL
    the forget term lowers their likelihood against a run without it (β = 0)."""
    model, forget, retain = tiny_lm(n_layer=3)
    cls = METHODS.get("gs-lora")
    assert "language" in cls.kinds and "language" not in METHODS.get("gs-lora-plus").kinds
    unlearned = {}
    for beta in (0.0, 1.0):
        method = cls(make_hparams(cls, "gs-lora", {"epochs": 5, "warmup_epochs": 1, "batch_size": 16,
                                                   "forget_batch_size": 16, "beta": beta, "bnd": 20.0,
                                                   "target_modules": FFN_LAYERS["gpt2"]}))
        request = lm_request(model, forget, retain, Track.FULL)
        unlearned[beta] = method.unlearn(request)
        assert request.info["adapter_groups"] == 3 and len(request.info["block_updates"]) == 3
    before, after = model.state_dict(), unlearned[1.0].state_dict()
    assert type(unlearned[1.0]) is type(model) and list(after) == list(before)
    assert all(after[k].shape == before[k].shape for k in before)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"lm.transformer.h.{b}.mlp.{layer}.weight" for b in range(3) for layer in ("c_fc", "c_proj")}
    assert not any("lora" in name for name, _ in unlearned[1.0].named_modules())
    assert answer_log_likelihood(unlearned[1.0], forget) < answer_log_likelihood(unlearned[0.0], forget) - 0.1


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2))


def gpt_neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    return GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                            num_attention_heads=2))


@pytest.mark.parametrize(("build", "arch", "layers"), [(llama, "llama", ("gate_proj", "up_proj", "down_proj")),
                                                       (gpt_neox, "gpt-neox", ("dense_h_to_4h", "dense_4h_to_h"))])
def test_the_ffn_targets_are_the_ffn_of_each_block_of_other_language_models(build, arch, layers):
    from unlearn.language.model import TwoChoiceLM

    with pytest.raises(UserError, match="matches no layer"):  # the default is the ViT's
        targeted_linears(TwoChoiceLM(build()), FFN_LINEARS, rank=8)
    matched = targeted_linears(TwoChoiceLM(build()), FFN_LAYERS[arch], rank=8)
    blocks = sorted({block_of(name) for name in matched})
    assert len(blocks) == 2 and all(block.startswith("lm.") for block in blocks)
    assert sorted(matched) == sorted(f"{block}.mlp.{layer}" for block in blocks for layer in layers)
