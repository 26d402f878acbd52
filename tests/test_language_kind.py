"""The language kind end to end: task forget sets, a cell's splits, the random-label protocol and the bad input a
language benchmark refuses (one line, exit 2, nothing written). Small suites and a 2-layer GPT-2; nothing is
downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import files_under, run_cli, spy_oracle_training

from unlearn.errors import UserError
from unlearn.forget import BuildContext, ForgetSpec
from unlearn.harness import Workspace, load_kind
from unlearn.results import read_record
from unlearn.spec import read_spec

SPEC = Path(__file__).parents[1] / "benchmarks" / "tasks-lm.yaml"
SMALL = "tasks-lm:train=100:val=10:test=40:tasks=compare+city"


def tiny_spec(tmp_path: Path, name: str = "tiny-lm", **changes) -> Path:
    """tasks-lm shrunk to seconds: two tasks of 100 training items, a 2-layer GPT-2, 2 epochs."""
    spec = yaml.safe_load(SPEC.read_text())
    spec.update(name=name, dataset=SMALL, model="gpt2-tiny", cpu_threads=1)
    spec["train"]["epochs"] = 2
    spec["grid"].update(forget=["task:compare:n=50"], seeds=[0, 1])
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key].update(value)
        else:
            spec[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_args(spec: Path, tmp_path: Path, cache: Path, *extra: str) -> list[str]:
    return ["run", "--benchmark", str(spec), "--seeds", "0", "--workdir", str(tmp_path / "work"), "--cache-dir",
            str(cache), "--no-progress", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def small_kind(tmp_path_factory):
    path = tiny_spec(tmp_path_factory.mktemp("spec"))
    workspace = Workspace.at(tmp_path_factory.mktemp("work"))
    return load_kind(read_spec(path), workspace, "cpu")


def test_task_forget_sets_take_n_seeded_items_of_the_task(small_kind):
    spec = ForgetSpec.parse("task:compare:n=30")
    assert spec.text == "task:compare:n=30" and ForgetSpec.parse("task:city").text == "task:city:n=1000"
    sets = [spec.builder.build(spec.params, BuildContext(small_kind.dataset, seed)).indices for seed in (0, 0, 1)]
    assert len(sets[0]) == 30 and list(sets[0]) == sorted(set(sets[0].tolist()))
    assert (sets[0] == sets[1]).all() and set(sets[0].tolist()) != set(sets[2].tolist())
    tasks = small_kind.dataset.tasks["train"]
    assert {tasks[i] for s in sets for i in s.tolist()} == {"compare"}


def test_copies_of_the_kind_keep_the_download_permission(small_kind):
    small_kind.download = True
    try:
        assert small_kind.with_spec(small_kind.spec).download
        assert small_kind.with_data(small_kind.dataset, {}).download
    finally:
        small_kind.download = False


def test_a_cell_splits_by_task(small_kind):
    from unlearn.forget.manifest import load_or_build

    manifest = load_or_build(small_kind.spec.source_dir / "manifests", ForgetSpec.parse("task:compare:n=50"),
                             small_kind.dataset, 0)
    splits = small_kind.splits(manifest)
    tasks = small_kind.dataset.tasks
    n_statements = sum(name == "" for name in tasks["train"])
    assert len(splits["forget"]) == 50 and len(splits["probe_train"]) == 100
    assert len(splits["retain"]) == 100 + n_statements  # city's items and every statement, no compare row
    assert len(splits["test_forgotten"]) == len(splits["probe_heldout"]) == 40 and len(splits["test"]) == 40
    retain_rows = {tuple(row.flatten().tolist()) for row in splits["retain"].x}
    assert not retain_rows & {tuple(row.flatten().tolist()) for row in splits["probe_train"].x}


def test_grid_runs_end_to_end_and_the_oracle_never_saw_the_task(tmp_path, shared_cache, capsys, monkeypatch):
    seen = spy_oracle_training(monkeypatch)
    args = run_args(tiny_spec(tmp_path), tmp_path, shared_cache, "--methods", "retrain,random-label,grad-ascent",
                    "--hparam", "grad-ascent.lr=1e9", "--hparam", "grad-ascent.epochs=3")
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "3 cells run, 0 reused, 1 failed" in err
    records = {r.method: r for p in (tmp_path / "work").rglob("*.json") if "runs" in p.parts for r in [read_record(p)]}
    retrain = records["retrain"]
    assert retrain.status == "ok" and {"Acc-f", "Acc-h", "Acc-o", "Gap-f", "Gap-h", "Acc[city]"} <= set(retrain.metrics)
    assert retrain.metrics["Gap-f"] == pytest.approx(retrain.metrics["Acc-f"] - 50)
    failed = records["grad-ascent"]
    assert failed.status == "failed" and failed.error.startswith("diverged:")

    oracle_data = seen[0]
    kind = load_kind(read_spec(Path(args[2])), Workspace.at(tmp_path / "other"), "cpu")
    compare_rows = kind.train.where(kind.dataset.rows("train", "compare"))
    trained = {tuple(row.flatten().tolist()) for row in oracle_data.x}
    assert len(trained) > 0 and not trained & {tuple(row.flatten().tolist()) for row in compare_rows.x}

    code, out2, err2 = run_cli(capsys, *args)
    assert code == 0 and "0 cells run, 3 reused" in err2 and out2 == out


def test_random_label_forgetting_brings_forget_accuracy_to_chance(tmp_path, shared_cache, capsys):
    """The paper's protocol: a model that answers a task well, fine-tuned on its forget items with labels drawn
    uniformly from the two options (no retain data), answers them at about chance."""
    spec = tiny_spec(tmp_path, name="protocol-lm", dataset="tasks-lm:train=200:val=10:test=60:tasks=compare+last",
                     train={"epochs": 30, "batch_size": 32, "lr": 3e-3},
                     hparams={"random-label": {"retain": False, "epochs": 10, "lr": 0.05, "batch_size": 16}})
    args = run_args(spec, tmp_path, shared_cache, "--methods", "retrain,random-label", "--forget", "task:last:n=150")
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    records = {r.method: r for p in (tmp_path / "work").rglob("*.json") if "runs" in p.parts for r in [read_record(p)]}
    forgot = records["random-label"].metrics
    before = records["random-label"].metric_info["lm-forgetting"]["original_forget_accuracy"]
    assert before > 80, "the original model did not learn the task, so nothing can be forgotten"
    assert abs(forgot["Acc-f"] - 50) < 15 < before - forgot["Acc-f"]
    assert forgot["Ratio-f"] == pytest.approx((before - forgot["Acc-f"]) / (before - 50))


@pytest.mark.parametrize("extra, message", [
    (("--forget", "task:compar"), "did you mean compare"),
    (("--forget", "task:compare:n=101"), "has 100 training items"),
    (("--forget", "task:compare:m=3"), "task:NAME[:n=N]"),
    (("--forget", "class:3"), "task:..."),
    (("--methods", "scrub"), "classification"),
])
def test_bad_forget_sets_and_methods_exit_2_with_nothing_written(tmp_path, capsys, extra, message):
    code, _, err = run_cli(capsys, *run_args(tiny_spec(tmp_path), tmp_path, tmp_path / "cache", *extra))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not files_under(tmp_path / "work") and not files_under(tmp_path / "cache")


def test_a_task_forget_set_on_an_image_benchmark_exits_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--benchmark", "digits", "--forget", "task:compare", "--seeds", "0",
                           "--workdir", str(tmp_path), "--no-progress", "--device", "cpu")
    assert code == 2 and "language benchmark" in err and not files_under(tmp_path / "data")


def save_checkpoint(directory: Path, vocab_size: int | None = None, tokenizer_tasks=("compare", "city")) -> Path:
    """A GPT-2 with its word-level tokenizer saved as a local checkpoint directory (`save_pretrained`)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from unlearn.language.tasks import make_suite
    from unlearn.language.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(make_suite(0, n_train=100, n_test=50, tasks=list(tokenizer_tasks)))
    config = GPT2Config(vocab_size=vocab_size or len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=None, eos_token_id=None)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_local_checkpoint_with_its_tokenizer_runs(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "ckpt")
    spec = tiny_spec(tmp_path, model=f"checkpoint:{ckpt}", train={"epochs": 1})
    code, _, err = run_cli(capsys, *run_args(spec, tmp_path, tmp_path / "cache", "--methods", "retrain"))
    assert code == 0, err
    (record,) = [read_record(p) for p in (tmp_path / "work").rglob("*.json") if "runs" in p.parts]
    assert record.status == "ok" and record.config["benchmark_model"]["model"] == f"checkpoint:{ckpt}"


def bert_dir(directory: Path) -> Path:
    from transformers import BertConfig, BertLMHeadModel

    save_checkpoint(directory)
    config = BertConfig(vocab_size=2000, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16)
    BertLMHeadModel(config).save_pretrained(directory)  # replaces the GPT-2's config and weights
    return directory


@pytest.mark.parametrize("make, message", [
    (lambda d: bert_dir(d), "no causal language model"),
    (lambda d: save_checkpoint(d, vocab_size=20), "the tokenizer and the weights do not match"),
    (lambda d: save_checkpoint(d, tokenizer_tasks=("last",)), "cannot tell the answers"),
    (lambda d: d, "pass --download"),
])
def test_bad_checkpoints_exit_2_with_nothing_written(tmp_path, capsys, make, message):
    ckpt = make(tmp_path / "ckpt")
    spec = tiny_spec(tmp_path, model=f"checkpoint:{ckpt}")
    capsys.readouterr()  # transformers' own output while the test saves the checkpoint
    code, _, err = run_cli(capsys, *run_args(spec, tmp_path, tmp_path / "cache", "--methods", "retrain"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not files_under(tmp_path / "work") and not files_under(tmp_path / "cache")


@pytest.mark.parametrize("changes, message", [
    ({"dataset": "tasks-lm:trian=5"}, "did you mean train"),
    ({"dataset": "tasks-lm:tasks=compare+cty"}, "did you mean city"),
    ({"dataset": "tasks-lm:tasks=compare"}, "at least two tasks"),
    ({"model": "gpt2-tny"}, "did you mean gpt2-tiny"),
])
def test_bad_language_specs_exit_2(tmp_path, capsys, changes, message):
    spec = tiny_spec(tmp_path, **changes)
    code, _, err = run_cli(capsys, *run_args(spec, tmp_path, tmp_path / "cache", "--methods", "retrain", "--forget",
                                             "task:compare:n=10"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not files_under(tmp_path / "work")


def test_user_errors_are_one_line():
    with pytest.raises(UserError, match="unknown task 'cty'"):
        ForgetSpec.parse("task:cty")
