"""The language kind's probe and predictor metrics (lm-probe, lm-predictors) and TwoChoiceLM.hidden_states: where
the states are read, what the probe finds and does not, the predictors against direct computations, and both
metrics in the records of a real grid. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import binomtest

from unlearn.cli import main
from unlearn.language.encode import encode_items
from unlearn.language.model import LMBlueprint
from unlearn.language.tasks import Item, make_suite
from unlearn.language.tokenizer import build_tokenizer
from unlearn.metrics import Evaluation
from unlearn.metrics.language_probe import answers, covariance_trace, predictors, probe_accuracy, question_states
from unlearn.results import read_record
from unlearn.spec import ProbeSettings


@pytest.fixture(scope="module")
def suite():
    return make_suite(0, n_train=120, n_test=60, tasks=["compare", "member"])


@pytest.fixture(scope="module")
def tokenizer(suite):
    return build_tokenizer(suite)


@pytest.fixture(scope="module")
def model(tokenizer):
    return LMBlueprint(vocab_size=len(tokenizer), n_layer=2, n_head=2, n_embd=32, n_positions=32,
                       pad_id=tokenizer.pad_token_id).build(0).eval()


def probe_layers(model, train, held, shuffle=False):
    states, held_states = question_states(model, train.x, 64), question_states(model, held.x, 64)
    train_answers, _ = answers(train.x, train.y)
    if shuffle:
        train_answers = [train_answers[i] for i in np.random.default_rng(0).permutation(len(train_answers))]
    held_answers, held_distractors = answers(held.x, held.y)
    return [probe_accuracy(states[layer], train_answers, held_states[layer], held_answers, held_distractors,
                           ProbeSettings(), 0)
            for layer in range(len(states))]


def test_hidden_states_are_what_the_head_reads_and_ignore_padding(suite, tokenizer, model):
    data = encode_items(suite.task("member").train[:6], tokenizer, seed=0)
    with torch.no_grad():
        states = model.hidden_states(data.x)
        assert len(states) == 3 and states[0].shape == (*data.x.shape[:2], data.x.shape[-1], 32)
        ids = data.x[:, :, 0].reshape(-1, data.x.shape[-1])
        logits = model.lm(input_ids=ids, attention_mask=(data.x[:, :, 1] >= 0).long().view(len(ids), -1)).logits
        torch.testing.assert_close(model.lm.lm_head(states[-1]).view(logits.shape), logits)
        wider = encode_items(suite.task("member").train[:6], tokenizer, seed=0, length=data.x.shape[-1] + 5)
        np.testing.assert_allclose(question_states(model, wider.x, 4), question_states(model, data.x, 4),
                                   rtol=1e-5, atol=1e-5)


def test_the_probe_reads_the_question_state(suite, tokenizer, model):
    # Items whose question ENDS with its true answer word: the question's last token names the answer, so a probe
    # reading the question's last state (even the embedding output, L0) finds it on every layer; one reading the
    # answer token or padding would see both options alike and could not.
    items = [Item("compare", f"{item.question} {item.answer}", item.answer, item.distractor)
             for item in suite.task("compare").train]
    train = encode_items(items[:80], tokenizer, seed=0, length=14)
    held = encode_items(items[80:], tokenizer, seed=1, length=14)
    assert min(probe_layers(model, train, held)) == 100.0


def test_a_question_end_alone_is_not_the_task_and_shuffled_answers_give_chance(suite, tokenizer, model):
    # On a real task every question ends with "?": the embedding output there (L0) is one vector, so its probe
    # names the answer most frequent in training for every item, right exactly on the held-out items whose true
    # answer that is.
    task = suite.task("compare")
    train, held = encode_items(task.train, tokenizer, seed=0), encode_items(task.test, tokenizer, seed=1)
    accuracies = probe_layers(model, train, held)
    majority = max(("yes", "no"), key=lambda word: sum(item.answer == word for item in task.train))
    assert accuracies[0] == pytest.approx(100.0 * np.mean([item.answer == majority for item in task.test]))
    # The blocks' features with the training answers shuffled: nothing to learn, held-out accuracy is chance.
    for accuracy in probe_layers(model, train, held, shuffle=True)[1:]:
        assert binomtest(round(accuracy * len(held) / 100), len(held), 0.5).pvalue > 0.01, accuracy


def test_variability_is_the_covariance_trace_at_the_question_end(suite, tokenizer, model):
    items = suite.task("member").train[:12]  # questions of different lengths, so padding differs
    data = encode_items(items, tokenizer, seed=0)
    ev = Evaluation(model, {"probe_train": data}, batch_size=5)
    with torch.no_grad():
        direct = np.stack([
            model.lm(input_ids=torch.tensor([tokenizer(item.question, add_special_tokens=False)["input_ids"]]),
                     output_hidden_states=True).hidden_states[-1][0, -1].numpy()
            for item in items])
    expected = float(np.sum(np.var(direct.astype(np.float64), axis=0, ddof=1)))
    assert predictors(ev)["Variability"] == pytest.approx(expected, rel=1e-4)
    tiny = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])
    assert covariance_trace(tiny) == pytest.approx(np.var(tiny[:, 0], ddof=1) + np.var(tiny[:, 1], ddof=1))


def test_confidence_is_the_true_answers_two_way_probability(suite, tokenizer, model):
    data = encode_items(suite.task("compare").train[:30], tokenizer, seed=3)
    with torch.no_grad():
        true = model.label_log_likelihood(data.x, data.y)
        false = model.label_log_likelihood(data.x, 1 - data.y)
    expected = float((1.0 / (1.0 + torch.exp(false - true))).mean())
    confidence = predictors(Evaluation(model, {"probe_train": data}))["Confidence"]
    assert 0.0 <= confidence <= 1.0 and confidence == pytest.approx(expected, rel=1e-5)


def tiny_spec(tmp_path: Path) -> Path:
    spec = yaml.safe_load((Path(__file__).parents[1] / "benchmarks" / "tasks-lm.yaml").read_text())
    spec.update(name="tiny-lm", dataset="tasks-lm:train=100:val=10:test=40:tasks=compare+city", model="gpt2-tiny",
                cpu_threads=1)
    spec["train"]["epochs"] = 2
    spec["grid"]["forget"] = ["task:compare:n=50"]
    spec["metrics"] = ["lm-forgetting", "lm-probe", "lm-predictors"]
    spec["gap_metrics"] = ["Acc-f", "Acc-h"]
    spec["report_metrics"] = ["Gap-f", "Probe", "Probe-Δorig", "Confidence"]
    path = tmp_path / "tiny-lm.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_metrics_appear_in_the_records_of_a_grid(tmp_path, shared_cache, capsys):
    args = ["run", "--benchmark", str(tiny_spec(tmp_path)), "--seeds", "0", "--methods", "retrain,random-label",
            "--workdir", str(tmp_path), "--cache-dir", str(shared_cache), "--no-progress", "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    records = {r.method: r for p in (tmp_path / "data" / "runs" / "tiny-lm").rglob("*.json") for r in [read_record(p)]}
    assert set(records) == {"retrain", "random-label"}
    for record in records.values():
        layers = [record.metrics[f"Probe@L{i}"] for i in range(3)]  # gpt2-tiny: embedding and 2 blocks
        assert all(0.0 <= value <= 100.0 for value in layers) and "Probe@L3" not in record.metrics
        assert record.metrics["Probe"] == pytest.approx(np.mean(layers[1:]))
        assert record.original_metrics["Probe-Δorig"] == 0.0 and record.oracle_metrics["Probe-Δoracle"] == 0.0
        assert record.metrics["Probe-Δorig"] == pytest.approx(record.metrics["Probe"] - record.original_metrics["Probe"])
        assert record.metrics["Probe-Δoracle"] == pytest.approx(record.metrics["Probe"] - record.oracle_metrics["Probe"])
        assert record.metric_info["lm-probe"]["items"] == {"probe_train": 100, "probe_heldout": 40}
        assert record.config["evaluation"]["probe"]["C"] == 1.0
    # The predictors are the original model's: the same in every record of the cell.
    assert len({(r.metrics["Confidence"], r.metrics["Variability"]) for r in records.values()}) == 1
    assert 0.0 < records["retrain"].metrics["Confidence"] < 1.0 and records["retrain"].metrics["Variability"] > 0.0
