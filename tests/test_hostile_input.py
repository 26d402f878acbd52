"""Hostile and broken input on the command line: one line and exit 2 (or a named, skipped file), never a traceback,
a hang, a crash or a file written where it should not be. Each case reproduces an input of issue 18's sweep."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib
import torch
from conftest import FIXTURE_RESULTS, FIXTURE_SPECS, files_under
from safetensors.torch import save_file

from unlearn.cli import main
from unlearn.leaderboard.plots import tradeoff
from unlearn.leaderboard.tables import Row, Stat, Table
from unlearn.spec import REPO_ROOT

DIGITS = (FIXTURE_SPECS / "digits.yaml").read_text()


def bomb(levels: int = 9) -> str:
    """A YAML flow sequence whose last item expands to 9 ** levels strings (the billion-laughs shape)."""
    parts = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert message in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def spec_file(tmp_path: Path, text: str, name: str = "hostile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_alias_bombs_in_an_hparam_or_anywhere_in_a_spec_are_refused_quickly(tmp_path):
    """Before the fix the error message expanded the bomb (2.2 GB after 90 s); the child process has 60 s."""
    tuned = "  finetune: {batch_size: 32, lr: 0.07, epochs: 60}"
    assert tuned in DIGITS
    in_hparams = spec_file(tmp_path, DIGITS.replace(tuned, f"  finetune: {{lr: {bomb()}}}"), "in-hparams.yaml")
    elsewhere = spec_file(tmp_path, DIGITS.replace("seeds: [0, 1, 2]", f"seeds: {bomb()}"), "elsewhere.yaml")
    script = textwrap.dedent(f"""
        from unlearn.cli import main
        work = {str(tmp_path / 'w')!r}
        codes = [main(["run", "--methods", "finetune", "--forget", "class:3", "--hparam", "finetune.lr=" + {bomb()!r},
                       "--workdir", work]),
                 main(["run", "--benchmark", {str(in_hparams)!r}, "--workdir", work]),
                 main(["run", "--benchmark", {str(elsewhere)!r}, "--workdir", work])]
        print(codes)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.stdout.strip() == "[2, 2, 2]", done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3 and all(len(line) < 400 for line in lines), lines
    assert "single number" in lines[0] and "alias" in lines[1] and "alias" in lines[2]
    assert files_under(tmp_path / "w") == []


BAD_RUNS = [
    (["--hparam", "finetune.lr=!!python/object/apply:os.system [true]"], "single number"),  # YAML ConstructorError
    (["--hparam", "finetune.lr=[unclosed"], "malformed YAML"),  # ScannerError
    (["--hparam", "finetune.lr=*undefined"], "undefined alias"),
    (["--hparam", "finetune.lr=inf"], "finite number"),  # accepted, then refused by the JSON writer after the manifest
    (["--hparam", "finetune.lr=.nan"], "finetune.lr"),
    (["--threads", "100000"], "between 1 and 1024"),  # torch segfaulted
    (["--methods", ".."], "method name '..'"),  # records outside data/runs
    (["--methods", "x" * 200_000], "200000 characters"),
    (["--methods", "$\\undefinedmacro{x}$"], "method name"),
    (["--forget", "class:3`"], "integer label"),
]


@pytest.mark.parametrize("args, message", BAD_RUNS, ids=lambda a: str(a)[:40])
def test_bad_run_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    args = ["--methods", "finetune", *args] if "--methods" not in args else args
    code, _, err = run(capsys, "run", "--forget", "class:3", *args, "--workdir", str(tmp_path / "w"), "--no-progress")
    one_line(code, err, message)
    assert files_under(tmp_path / "w") == []


BAD_SPECS = [
    (lambda t: t.replace("name: digits", "name: '..'"), "benchmark name"),
    (lambda t: t.replace("name: digits", "name: \"a/../../b\""), "benchmark name"),
    (lambda t: t.replace("cpu_threads: 1", "cpu_threads: 100000"), "cpu_threads"),  # torch segfaulted
    (lambda t: t.replace("lr: 0.05", "lr: .inf", 1), "finite number"),
    (lambda t: t.replace("hparams:", "hparams:\n  finetun: {lr: 0.1}", 1), "did you mean finetune"),  # was ignored
    (lambda t: t.replace("hparams:", "hparams:\n  gs-lora: {nonsense_knob: 0.5}", 1), "'nonsense_knob'"),
]


@pytest.mark.parametrize("change, message", BAD_SPECS, ids=[m for _, m in BAD_SPECS])
def test_bad_specs_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, change, message):
    spec = spec_file(tmp_path, change(DIGITS), "digits.yaml")
    code, _, err = run(capsys, "run", "--benchmark", str(spec), "--methods", "finetune", "--forget", "class:3",
                       "--workdir", str(tmp_path / "w"), "--no-progress")
    one_line(code, err, message)
    assert files_under(tmp_path / "w") == [] and sorted(p.name for p in tmp_path.iterdir()) == ["digits.yaml"]


def test_random_bytes_or_a_non_utf8_file_as_a_spec_is_one_line(tmp_path, capsys):
    for name, content in (("noise.yaml", bytes(range(256)) * 4), ("latin.yaml", DIGITS.encode("utf-16"))):
        (tmp_path / name).write_bytes(content)
        code, _, err = run(capsys, "run", "--benchmark", str(tmp_path / name), "--workdir", str(tmp_path / "w"))
        one_line(code, err, name)


def test_spellings_of_one_forget_set_are_one_set_with_one_manifest(tmp_path, capsys):
    from unlearn.forget import ForgetSpec

    assert {ForgetSpec.parse(t).text for t in ("random:0.1", "random:0.10", "random:.1", "random:1e-1")} == {"random:0.1"}
    assert ForgetSpec.parse("class:３").text == ForgetSpec.parse("class:03").text == "class:3"
    code, _, err = run(capsys, "forget-set", "build", "class:３", "--workdir", str(tmp_path), "--no-progress")
    assert code == 0, err
    assert [p.name for p in files_under(tmp_path / "data" / "forget-sets")] == ["class-3.json"]


@pytest.fixture
def digits_weights(digits_kind) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in digits_kind.new_model(0).state_dict().items()}


@pytest.mark.parametrize("dtype", [torch.float64, torch.bool, torch.float16, "nan"])
def test_evaluate_refuses_weights_in_a_dtype_the_model_does_not_use(tmp_path, capsys, digits_weights, dtype):
    """load_state_dict would cast them silently (float64 rounded, bool made 0/1); NaN weights were refused only
    after the cell's manifest was written."""
    key = next(k for k, v in digits_weights.items() if v.is_floating_point())
    digits_weights[key] = digits_weights[key].fill_(float("nan")) if dtype == "nan" else digits_weights[key].to(dtype)
    save_file(digits_weights, str(tmp_path / "m.safetensors"))
    code, _, err = run(capsys, "evaluate", "--forget", "class:3", "--checkpoint", str(tmp_path / "m.safetensors"),
                       "--workdir", str(tmp_path / "w"), "--no-progress")
    one_line(code, err, "NaN" if dtype == "nan" else f"dtype of {key}")
    assert files_under(tmp_path / "w") == []  # refused before anything is built or trained


def test_allow_pickle_is_refused_on_a_torch_whose_weights_only_loader_can_run_code(tmp_path, capsys, monkeypatch,
                                                                                   digits_weights):
    torch.save(digits_weights, tmp_path / "m.pt")
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    code, _, err = run(capsys, "evaluate", "--forget", "class:3", "--checkpoint", str(tmp_path / "m.pt"),
                       "--allow-pickle", "--workdir", str(tmp_path / "w"), "--no-progress")
    one_line(code, err, "CVE-2025-32434")
    pins = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch>=2.6" in [p.replace(" ", "") for p in pins]


def test_a_checkpoint_header_nested_too_deeply_is_one_line(tmp_path, capsys):
    header = b'{"w": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    (tmp_path / "deep.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    code, _, err = run(capsys, "evaluate", "--forget", "class:3", "--checkpoint", str(tmp_path / "deep.safetensors"),
                       "--workdir", str(tmp_path / "w"), "--no-progress")
    one_line(code, err, "not a checkpoint")


def test_broken_records_and_manifests_are_named_and_skipped_or_set_aside(tmp_path, capsys):
    results = tmp_path / "board" / "results" / "digits"
    results.mkdir(parents=True)
    (results / "latin1.json").write_bytes('{"method": "é"}'.encode("latin-1"))
    (results / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (results / "nan.json").write_text('{"metrics": {"UA": NaN}}')
    long_name = json.loads(next(FIXTURE_RESULTS.rglob("finetune/*.json")).read_text())
    long_name["method"] = "m" * 200_000
    (results / "long.json").write_text(json.dumps(long_name))
    code, _, err = run(capsys, "leaderboard", "--dir", str(tmp_path / "board"))
    assert code == 0 and "Traceback" not in err
    reasons = {line.split(": ", 2)[1].rsplit("/", 1)[-1]: line for line in err.splitlines()
               if line.startswith("unlearn: skipped")}
    assert set(reasons) == {"latin1.json", "deep.json", "nan.json", "long.json"}, err
    assert "not UTF-8" in reasons["latin1.json"] and "nested too deeply" in reasons["deep.json"]
    assert "200000 characters" in reasons["long.json"] and len(reasons["long.json"]) < 500

    manifest = tmp_path / "w" / "data" / "forget-sets" / "digits" / "class-3.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(b"\xff\xfe" + b"[" * 100_000)
    code, _, err = run(capsys, "forget-set", "build", "class:3", "--workdir", str(tmp_path / "w"), "--no-progress")
    assert code == 0 and "not UTF-8" in err and "moved it to class-3.json.corrupt" in err, err
    assert json.loads(manifest.read_text())["spec"] == "class:3"


def test_a_method_name_with_math_text_is_drawn_as_plain_text():
    stats = {"UA": Stat(10.0, 1.0, 3), "TA": Stat(90.0, 1.0, 3)}
    rows = (Row("retrain", "oracle", stats, 3, 3), Row("$\\undefinedmacro{x}$", "method", stats, 3, 3))
    assert tradeoff(Table("digits", "class:3", ("UA", "TA"), rows)).startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["Eve\n# Pwned heading", "x" * 101, "tab\there", "rtl\u202eevil"])
def test_a_submitter_name_that_is_not_one_short_line_is_refused(tmp_path, capsys, name):
    """A newline in --submitter injected a heading into the leaderboard's README.md and index.html."""
    import shutil

    runs, board = tmp_path / "runs", tmp_path / "board"
    shutil.copytree(FIXTURE_RESULTS, runs)
    shutil.copytree(FIXTURE_RESULTS, board / "results")
    before = {p: p.read_bytes() for p in files_under(board)}
    code, _, err = run(capsys, "submit", "--methods", "finetune", "--results-dir", str(runs), "--leaderboard",
                       str(board), "--submitter", name)
    one_line(code, err, "--submitter")
    assert {p: p.read_bytes() for p in files_under(board)} == before
