"""The hostile and broken inputs `hostile_sweep.py` replays: each a command of `unlearn`, the files it finds in its
folder, and what counts as handling it (issue 18's sweep, extended). Read by the sweep; nothing here runs a command."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BOARD = REPO / "leaderboard" / "results"
MARK = "data-pwned"
"""The attribute every page payload sets on the body if it runs."""
PAGE_OUTPUTS = ("board/README.md", "board/leaderboard.csv", "board/index.html", "board/plots/*.png")


def payload(tag: str) -> str:
    """Markup that marks the page's body if it ever runs."""
    return (f"<img src=x onerror=\"document.body.setAttribute('{MARK}','{tag}')\">"
            f"<script>document.body.setAttribute('{MARK}','{tag}')</script>")


def bomb(levels: int = 9) -> str:
    """A YAML flow sequence whose last item expands to 9 ** levels strings."""
    parts = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


@dataclass
class Case:
    """One hostile input: the command after `unlearn`, what it finds in its folder, what counts as handled."""

    name: str
    command: list[str]
    setup: Callable[[Path], None] | None = None
    expect: str = "error"
    """error: exit 2 in one line; skip: exit 0 naming the file it skipped; shown: exit 0, the payload as text."""
    outputs: tuple[str, ...] = ()
    """Glob patterns (relative to the case folder) of files the command may write."""


DIGITS = (REPO / "benchmarks" / "digits.yaml").read_text()
TUNED = "  finetune: {batch_size: 32, lr: 0.07, epochs: 60}"


def write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return setup


def spec_case(name: str, text: str | bytes) -> Case:
    return Case(f"run: spec {name}", ["run", "--benchmark", f"{name}.yaml", "--methods", "finetune",
                                      "--forget", "class:3"], write(f"{name}.yaml", text))


def model_weights(root: Path, change: Callable[[dict], None] | None = None, name: str = "m.safetensors") -> None:
    """A digits small-CNN state dict (optionally changed) as safetensors in `root`."""
    import torch
    from safetensors.torch import save_file

    from unlearn.models import Blueprint

    state = {k: v.clone() for k, v in Blueprint("small-cnn", 1, (8, 8), 10, (0.0,), (1.0,)).build(0).state_dict().items()}
    if change:
        change(state)
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".pt"):
        torch.save(state, root / name)
    else:
        save_file(state, str(root / name))


def first_float(state: dict, dtype: str) -> None:
    import torch

    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].to(getattr(torch, dtype))


class Pickled:
    """Unpickling this would create the file `pwned` (the sweep checks it never appears)."""

    def __reduce__(self):
        return (exec, ("open('pwned', 'w').write('pwned')",))


def pickle_payload(root: Path) -> None:
    import pickle

    (root / "evil.pt").write_bytes(pickle.dumps({"w": Pickled()}))


def safetensors_header(header: bytes, length: int | None = None) -> bytes:
    return (len(header) if length is None else length).to_bytes(8, "little") + header


def evaluate_case(name: str, checkpoint: str, setup: Callable[[Path], None] | None, *extra: str) -> Case:
    return Case(f"evaluate: {name}", ["evaluate", "--forget", "class:3", "--checkpoint", checkpoint, *extra], setup)


def board_base(root: Path) -> Path:
    """board/results holding the committed digits class:3 records of three methods; returns finetune's folder."""
    for method in ("retrain", "finetune", "grad-ascent"):
        shutil.copytree(BOARD / "digits" / "class_3" / method, root / "board" / "results" / "digits" / "class_3" / method)
    return root / "board" / "results" / "digits" / "class_3" / "finetune"


def board_record(change: Callable[[dict], None], every_seed: bool = False) -> Callable[[Path], None]:
    """A board with one more finetune record, a committed one changed by `change` (or, with `every_seed`, every
    finetune record changed in place: one hyperparameter configuration, a column in every row)."""
    def setup(root: Path) -> None:
        folder = board_base(root)
        files = sorted(folder.glob("*.json"))
        for path in files if every_seed else files[:1]:
            data = json.loads(path.read_text())
            change(data)
            (path if every_seed else folder / "hostile.json").write_text(json.dumps(data))
    return setup


def board_file(name: str, content: bytes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (board_base(root).parent / name).write_bytes(content)
    return setup


def board_case(name: str, setup: Callable[[Path], None], expect: str = "skip") -> Case:
    return Case(f"leaderboard: {name}", ["leaderboard", "--dir", "board"], setup, expect, PAGE_OUTPUTS)


def runs_for_submit(change: Callable[[dict], None] | None) -> Callable[[Path], None]:
    """runs/ holding the committed digits records (without submission blocks), one of them changed; board/ a copy."""
    def setup(root: Path) -> None:
        shutil.copytree(BOARD / "digits", root / "board" / "results" / "digits")
        for path in sorted((BOARD / "digits").rglob("*.json")):
            data = json.loads(path.read_text())
            data.pop("submission", None)
            dest = root / "runs" / "digits" / path.relative_to(BOARD / "digits")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(json.dumps(data))
        if change is not None:
            victim = next((root / "runs").rglob("finetune/*.json"))
            data = json.loads(victim.read_text())
            out = change(data)
            victim.write_bytes(out) if isinstance(out, bytes) else victim.write_text(json.dumps(data))
    return setup


def submit_case(name: str, change: Callable[[dict], None] | None, *extra: str) -> Case:
    command = ["submit", "--methods", "finetune", "--results-dir", "runs", "--leaderboard", "board", *extra]
    if "--submitter" not in extra:
        command += ["--submitter", "sweep"]
    return Case(f"submit: {name}", command, runs_for_submit(change))


def cases() -> list[Case]:
    run = lambda name, *args: Case(f"run: {name}", ["run", "--methods", "finetune", "--forget", "class:3", *args])  # noqa: E731
    out = [
        Case("run: method '..'", ["run", "--methods", "..", "--forget", "class:3"]),
        Case("run: method 100,000 characters", ["run", "--methods", "m" * 100_000, "--forget", "class:3"]),
        Case("run: method with math text", ["run", "--methods", "$\\undefinedmacro{x}$", "--forget", "class:3"]),
        Case("run: method with a slash", ["run", "--methods", "a/../../b", "--forget", "class:3"]),
        Case("run: method with a newline", ["run", "--methods", "finetune\n# x", "--forget", "class:3"]),
        Case("run: unknown method", ["run", "--methods", "finetun", "--forget", "class:3"]),
        Case("run: import path to a non-method", ["run", "--methods", "os:system", "--forget", "class:3"]),
        Case("run: import path that runs nothing", ["run", "--methods", "no_such_module_x:Thing", "--forget", "class:3"]),
        run("fraction 1.5", "--forget", "random:1.5"),
        run("fraction nan", "--forget", "random:nan"),
        run("fraction inf", "--forget", "random:inf"),
        run("class -1", "--forget", "class:-1"),
        run("class 10^20", "--forget", "class:99999999999999999999"),
        run("backtick in class", "--forget", "class:3`"),
        run("script in a worst-case option", "--forget", "worst-case:0.1:objective=<script>"),
        run("poison target out of range", "--forget", "corrective:poison:0.1:0.5:target=99"),
        run("continual too many classes", "--forget", "continual:99x99"),
        run("path as forget kind", "--forget", "../../etc:1"),
        run("negative seed", "--seeds", "-1"),
        run("seed not a number", "--seeds", "1e9"),
        run("lr inf", "--hparam", "finetune.lr=inf"),
        run("lr nan", "--hparam", "finetune.lr=.nan"),
        run("lr a list", "--hparam", "finetune.lr=[1,2]"),
        run("alias bomb in --hparam", "--hparam", "finetune.lr=" + bomb()),
        run("python tag in --hparam", "--hparam", "finetune.lr=!!python/object/apply:os.system ['touch pwned']"),
        run("undefined alias in --hparam", "--hparam", "finetune.lr=*x"),
        run("unterminated flow in --hparam", "--hparam", "finetune.lr=[1"),
        run("negative epochs", "--hparam", "finetune.epochs=-1"),
        run("unknown hyperparameter", "--hparam", "finetune.nosuch=1"),
        run("hparam of a method not in the grid", "--hparam", "salun.lr=0.1"),
        Case("run: mask that is not a checkpoint", ["run", "--methods", "salun", "--forget", "class:3", "--hparam",
                                                   "salun.mask_path=/etc/passwd"]),
        run("threads 100000", "--threads", "100000"),
        run("threads -5", "--threads", "-5"),
        run("jobs 0", "--executor", "process", "--jobs", "0"),
        run("unknown executor", "--executor", "threads"),
        run("device cuda:7", "--device", "cuda:7" if not _has_cuda() else "cuda:99"),
        run("device as a path", "--device", "../../x"),
        run("benchmark as a path to a non-spec", "--benchmark", "/etc/passwd"),
        run("benchmark as a device file", "--benchmark", "/dev/zero"),
        Case("run: results dir is a file", ["run", "--methods", "finetune", "--forget", "class:3", "--results-dir",
                                            "blocker"], write("blocker", "x")),
        Case("run: workdir under a file", ["run", "--methods", "finetune", "--forget", "class:3", "--workdir",
                                           "blocker/w"], write("blocker", "x")),
        Case("run: cache kind folder is a file", ["run", "--methods", "finetune", "--forget", "class:3"],
             lambda root: ((root / "data" / "cache").mkdir(parents=True), (root / "data/cache/original").write_text("x"))),
        spec_case("random-bytes", bytes(range(256)) * 8),
        spec_case("utf-16", DIGITS.encode("utf-16")),
        spec_case("nul-bytes", DIGITS.replace("name: digits", "name: digits\x00")),
        spec_case("alias-bomb-in-hparams", DIGITS.replace(TUNED, f"  finetune: {{lr: {bomb()}}}")),
        spec_case("alias-bomb-in-grid", DIGITS.replace("seeds: [0, 1, 2]", f"seeds: {bomb()}")),
        spec_case("nested-deep", "a: " + "[" * 20_000 + "]" * 20_000),
        spec_case("name-dot-dot", DIGITS.replace("name: digits", "name: '..'")),
        spec_case("name-with-slashes", DIGITS.replace("name: digits", "name: 'a/../../b'")),
        spec_case("name-with-script", DIGITS.replace("name: digits", f"name: '{payload('name')}'")),
        spec_case("cpu-threads-100000", DIGITS.replace("cpu_threads: 1", "cpu_threads: 100000")),
        spec_case("lr-inf", DIGITS.replace("lr: 0.05", "lr: .inf", 1)),
        spec_case("hparams-of-unknown-method", DIGITS.replace("hparams:", "hparams:\n  finetun: {lr: 0.1}", 1)),
        spec_case("hparams-unknown-knob", DIGITS.replace("hparams:", "hparams:\n  gs-lora: {knob: 1}", 1)),
        spec_case("python-tag", DIGITS.replace("name: digits", "name: !!python/object/apply:os.system ['touch pwned']")),
        spec_case("a-list", "- 1\n- 2\n"),
        evaluate_case("pickle payload", "evil.pt", pickle_payload),
        evaluate_case("pickle payload with --allow-pickle", "evil.pt", pickle_payload, "--allow-pickle"),
        evaluate_case("header length 2^63", "h.safetensors", write("h.safetensors", safetensors_header(b"{}", 2**63))),
        evaluate_case("header bigger than the file", "h.safetensors",
                      write("h.safetensors", safetensors_header(b'{"w": {"dtype": "F32", "shape": [9999999], '
                                                                b'"data_offsets": [0, 39999996]}}'))),
        evaluate_case("header nested 50,000 deep", "h.safetensors",
                      write("h.safetensors", safetensors_header(b'{"w": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"))),
        evaluate_case("float64 weights", "m.safetensors", lambda r: model_weights(r, lambda s: first_float(s, "float64"))),
        evaluate_case("bool weights", "m.safetensors", lambda r: model_weights(r, lambda s: first_float(s, "bool"))),
        evaluate_case("a missing tensor", "m.safetensors", lambda r: model_weights(r, lambda s: s.pop(next(iter(s))))),
        evaluate_case("a tensor of another shape", "m.safetensors",
                      lambda r: model_weights(r, lambda s: s.update({k: v[:1] for k, v in s.items() if len(v) > 1}))),
        evaluate_case("NaN weights", "m.safetensors",
                      lambda r: model_weights(r, lambda s: next(v for v in s.values() if v.is_floating_point()).fill_(
                          float("nan")))),
        evaluate_case("empty file", "empty.safetensors", write("empty.safetensors", b"")),
        evaluate_case("random bytes", "noise.bin", write("noise.bin", os.urandom(4096))),
        evaluate_case("a directory", ".", None),
        evaluate_case("a device file", "/dev/zero", None),
        evaluate_case("a missing file", "nowhere.safetensors", None),
        Case("evaluate: a continual sequence", ["evaluate", "--forget", "continual:2x1", "--checkpoint", "m.safetensors",
                                               "--benchmark", "digits-vit"], model_weights),
        submit_case("submitter with a newline", None, "--submitter", "Eve\n# Pwned"),
        submit_case("submitter of 101 characters", None, "--submitter", "x" * 101),
        submit_case("submitter with a bidirectional override", None, "--submitter", "evil\u202etxt"),
        submit_case("record of method '..'", lambda d: d.update(method="..")),
        submit_case("record with a script as track", lambda d: d.update(track=payload("track"))),
        submit_case("record that is not UTF-8", lambda d: json.dumps(d).replace("finetune", "fïnetune").encode("latin-1")),
        submit_case("record with a NaN metric", lambda d: json.dumps(d).replace('"UA": ', '"UA": NaN, "x": ', 1).encode()),
        submit_case("record nested too deep", lambda d: ("[" * 100_000 + "]" * 100_000).encode()),
        Case("submit: no such results dir", ["submit", "--results-dir", "nowhere", "--leaderboard", "board"]),
        Case("submit: leaderboard is a file", ["submit", "--methods", "finetune", "--results-dir", "runs",
                                               "--leaderboard", "blocker", "--submitter", "x"],
             lambda root: (runs_for_submit(None)(root), (root / "blocker").write_text("x"))),
        board_case("track with a script", board_record(lambda d: d.update(track=payload("track")))),
        board_case("device with a script", board_record(lambda d: d["env"].update(device=payload("device")))),
        board_case("python version with a script", board_record(lambda d: d["env"].update(python=payload("py")))),
        board_case("torch version with a script", board_record(lambda d: d["env"]["packages"].update(
            torch=payload("torch")))),
        board_case("backtick in the forget spec", board_record(lambda d: d["forget"].update(spec="class:3`" + payload("f")))),
        board_case("method with a newline and a heading", board_record(lambda d: d.update(method="finetune\n# heading"))),
        board_case("method of 200,000 characters", board_record(lambda d: d.update(method="m" * 200_000))),
        board_case("benchmark '..'", board_record(lambda d: d.update(benchmark=".."))),
        board_case("record nested too deep", board_file("deep.json", b"[" * 100_000 + b"]" * 100_000)),
        board_case("record that is not UTF-8", board_file("latin.json", '{"method": "é"}'.encode("latin-1"))),
        board_case("record with NaN", board_file("nan.json", b'{"metrics": {"UA": NaN}}')),
        board_case("file name with a backtick and a tag", board_file("`<img src=x onerror=alert(1)>`.json", b"[]")),
        board_case("hyperparameter with a script", board_record(lambda d: d["hparams"].update(lr=payload("hp")), True),
                   expect="shown"),
        board_case("origin with a script", board_record(lambda d: d.update(method_origin=payload("origin")), True),
                   expect="shown"),
        board_case("submitter with a script", board_record(
            lambda d: d["submission"].update(submitted_by=payload("by")[:100]), True), expect="shown"),
        board_case("metric column with a script", board_record(
            lambda d: (d["config"]["report_metrics"].append(payload("col")[:60]),
                       d["metrics"].update({payload("col")[:60]: 1.0})), True), expect="shown"),
        board_case("folder name with a tag", lambda root: shutil.copytree(
            BOARD / "digits" / "class_3" / "finetune", board_base(root).parent / "<img src=x onerror=alert(1)>"),
            expect="skip"),
    ]
    return out


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False
