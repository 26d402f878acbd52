"""Where `unlearn tune` writes: a plugin's choice into an overlay the user owns, merged by `unlearn run`; a spec
edited in place changes only the method's `hparams:` line."""

from __future__ import annotations

import difflib
import shutil

import pytest

from unlearn import tune as tuning
from unlearn.cli import main
from unlearn.errors import UserError
from unlearn.harness import plan_grid
from unlearn.hashing import stable_hash
from unlearn.overlay import apply_overlay
from unlearn.results import read_record
from unlearn.spec import REPO_ROOT, read_spec
from unlearn.yaml_edit import set_entry

SPECS = sorted((REPO_ROOT / "benchmarks").glob("*.yaml"))


def result(benchmark: str, method: str, values: dict) -> tuning.TuneResult:
    best = tuning.Trial(values, 1.25, {"class:3": 1.25})
    return tuning.TuneResult(benchmark, method, ["random:0.1", "class:3"], [0, 1], ["UA"], [best], best)


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = [d for d in difflib.ndiff(before.splitlines(True), after.splitlines(True)) if d[:2] in ("- ", "+ ")]
    return [d[2:] for d in diff if d[:2] == "- "], [d[2:] for d in diff if d[:2] == "+ "]


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_writing_a_spec_changes_only_the_methods_line(tmp_path, path):
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    before = copy.read_text()
    spec = read_spec(copy)
    method = next(iter(spec.hparams), "finetune")
    tuning.write_to_spec(copy, result(spec.name, method, {"lr": 0.0123}))
    after = copy.read_text()
    removed, added = changed_lines(before, after)
    if "\nhparams:" not in before:  # the section is added at the end
        assert after.startswith(before) and added.pop(0) == "hparams:\n"
    assert len(added) == 1 and len(removed) == (1 if method in spec.hparams else 0)
    assert added[0].lstrip().startswith(f"{method}: {{") and "lr: 0.0123" in added[0]
    assert added[0].rstrip("\n").endswith("# tuned: validation gap 1.25 on random:0.1,class:3, seeds 0,1")
    assert added[0].rstrip("\n") == added[0].rstrip()  # no trailing spaces (the rest is as it was: see the diff)
    assert read_spec(copy).hparams[method] == {**spec.hparams.get(method, {}), "lr": 0.0123}
    if "# tuned" in "".join(removed):  # the comment keeps its column unless the values reach it
        assert added[0].index("# tuned") == max(removed[0].index("# tuned"), added[0].index("}") + 3)


def test_a_new_method_is_one_added_line_after_the_others(tmp_path):
    copy = tmp_path / "digits.yaml"
    shutil.copy(REPO_ROOT / "benchmarks" / "digits.yaml", copy)
    before = copy.read_text()
    tuning.write_to_spec(copy, result("digits", "plugin_methods:Spy", {"scale": 2.0}))
    after = copy.read_text()
    assert after.startswith(before) and after[len(before):].startswith("  plugin_methods:Spy: {scale: 2.0}")
    assert read_spec(copy).hparams["plugin_methods:Spy"] == {"scale": 2.0}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: [1, 2]  # c\n", "a: [1, 2]  # c\nhparams:\n  m: {lr: 0.5}  # t\n"),
        ("a: 1\nhparams:\n", "a: 1\nhparams:\n  m: {lr: 0.5}  # t\n"),
        ("hparams: ~\nb: 2\n", "hparams:\n  m: {lr: 0.5}  # t\nb: 2\n"),
        ("hparams:\n  m:\n    lr: 1  # old\n    k: 2\n  # kept\nb: [1,\n   2]\n",
         "hparams:\n  m: {lr: 0.5, k: 2}  # t\n  # kept\nb: [1,\n   2]\n"),
        ("a: 1\r\nhparams:\r\n  m: {lr: 1}\r\n  n: {}\r\n", "a: 1\r\nhparams:\r\n  m: {lr: 0.5}  # t\r\n  n: {}\r\n"),
    ],
    ids=["no-section", "empty-section", "null-section", "block-entry", "crlf"],
)
def test_entry_edits_keep_every_other_byte(text, expected):
    assert set_entry(text, "hparams", "m", {"lr": 0.5}, "t", "f.yaml") == expected


def test_a_flow_style_section_is_refused():
    with pytest.raises(UserError, match="must be a block mapping"):
        set_entry("hparams: {m: {lr: 1}}\n", "hparams", "m", {"lr": 0.5}, "t", "f.yaml")


def test_an_overlay_merges_value_by_value_over_the_spec(tmp_path, digits_spec):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("benchmark: digits\nhparams:\n  finetune: {lr: 0.5}\n  plugin_methods:Spy: {scale: 3}\n")
    merged = apply_overlay(digits_spec, overlay)
    assert merged.hparams["finetune"] == {**digits_spec.hparams["finetune"], "lr": 0.5}
    assert merged.source_dir == digits_spec.source_dir
    plan = plan_grid(merged, ["finetune", "plugin_methods:Spy"], ["class:3"], [0])
    assert [c.hparams for c in plan.methods][1].scale == 3.0
    assert plan.methods[0].hparams.epochs == digits_spec.hparams["finetune"]["epochs"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n", "a YAML mapping with `benchmark:`"),
        ("benchmark: digits\nhparams: {finetune: {lr: 0.1}}\nextra: 1\n", "extra: Extra inputs are not permitted"),
        ("benchmark: mnist1d\nhparams: {}\n", "benchmark 'mnist1d', not 'digits'"),
        ("benchmark: digits\nhparams: {finetune: 3}\n", "hparams.finetune"),
        ("benchmark: digits\nhparams: {finetune: {lr: -1}}\n", "hparams of 'finetune': hyperparameter finetune.lr"),
        ("benchmark: digits\nhparams: {finetune: {lrr: 1}}\n", "unknown hyperparameter 'lrr'"),
        ("benchmark: digits\nhparams: {no-such: {lr: 1}}\n", "unknown method 'no-such'"),
        ("benchmark: digits\nhparams: [\n", "malformed YAML"),
    ],
)
def test_a_malformed_overlay_is_a_one_line_error_before_anything_runs(tmp_path, capsys, text, message):
    (tmp_path / "hparams").mkdir()
    (tmp_path / "hparams" / "digits.yaml").write_text(text)
    code = main(["run", "--benchmark", "digits", "--methods", "finetune", "--workdir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and str(tmp_path / "hparams" / "digits.yaml") in err[0]
    assert not (tmp_path / "data").exists()


def test_run_refuses_a_missing_hparams_file(tmp_path, capsys):
    code = main(["run", "--benchmark", "digits", "--methods", "finetune", "--hparams-file", str(tmp_path / "no.yaml"),
                 "--workdir", str(tmp_path)])
    assert code == 2 and "cannot read hyperparameter overlay" in capsys.readouterr().err


def test_tuning_a_plugin_writes_an_overlay_that_runs_use(tmp_path, mini, shared_cache, capsys):
    spec_path = tmp_path / "digits-mini.yaml"
    shutil.copy(mini, spec_path)
    before = spec_path.read_bytes()
    common = ["--forget", "class:3", "--seeds", "0", "--no-progress", "--cache-dir", str(shared_cache)]
    work = tmp_path / "work"
    tune = ["tune", "--method", "plugin_methods:Spy", "--benchmark", str(spec_path), "--grid", "scale=2,3", *common]
    assert main([*tune, "--workdir", str(work)]) == 0
    err = capsys.readouterr().err
    overlay = work / "hparams" / "digits-mini.yaml"
    assert spec_path.read_bytes() == before  # the spec is the shipped one: never written without --write-spec
    assert f"wrote hparams.plugin_methods:Spy to {overlay}" in err
    assert apply_overlay(read_spec(spec_path), overlay).hparams["plugin_methods:Spy"] == {"scale": 2.0}  # a tie: first

    run = ["run", "--methods", "plugin_methods:Spy", "--benchmark", str(spec_path), *common]
    assert main([*run, "--workdir", str(work)]) == 0
    assert f"tuned hyperparameters from {overlay}" in capsys.readouterr().err
    assert main([*run, "--workdir", str(tmp_path / "plain")]) == 0  # another workdir: no overlay
    tuned, = [read_record(p) for p in (work / "data" / "runs").rglob("*.json")]
    plain, = [read_record(p) for p in (tmp_path / "plain" / "data" / "runs").rglob("*.json")]
    assert tuned.hparams == tuned.config["hparams"] == {"scale": 2.0} and plain.config["hparams"] == {"scale": 1.0}
    assert tuned.config_hash == stable_hash(tuned.config) != plain.config_hash

    assert main([*tune, "--workdir", str(work), "--write-spec"]) == 0  # the trials are reused
    removed, added = changed_lines(before.decode(), spec_path.read_text())
    assert removed == [] and added[0].startswith("  plugin_methods:Spy: {scale: 2}  # tuned") and len(added) == 1
