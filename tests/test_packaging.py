"""What ships with the package: a built wheel carries the benchmark specs and the committed forget-set manifests,
and works installed, away from any checkout; the shipped manifests are a read-only fallback for a workdir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from unlearn.cli import main
from unlearn.forget import ForgetManifest, ForgetSpec, load_or_build, manifest_path
from unlearn.results import read_record
from unlearn.shipped import BENCHMARKS, FORGET_SETS, shipped_dir
from unlearn.spec import REPO_ROOT, available_benchmarks

SHIPPED = "unlearn/_shipped/"


def committed_files() -> set[str]:
    """The checkout's specs and manifests, named as the wheel holds them."""
    specs = {f"{SHIPPED}{BENCHMARKS}/{p.name}" for p in (REPO_ROOT / "benchmarks").glob("*.yaml")}
    root = REPO_ROOT / "data" / "forget-sets"
    return specs | {f"{SHIPPED}{FORGET_SETS}/{p.relative_to(root).as_posix()}" for p in root.rglob("*.json")}


def build_wheel(tmp_path: Path) -> Path:
    """A wheel built, offline, from a copy of what a clone holds (the build's own folders stay out of the tree)."""
    source = tmp_path / "source"
    litter = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    shutil.copytree(REPO_ROOT / "unlearn", source / "unlearn", symlinks=True, ignore=litter)
    shutil.copytree(REPO_ROOT / "benchmarks", source / "benchmarks", ignore=litter)
    shutil.copytree(REPO_ROOT / "data" / "forget-sets", source / "data" / "forget-sets")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    offline = {**os.environ, "PIP_NO_INDEX": "1"}
    done = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                           str(source)], capture_output=True, text=True, env=offline, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("unlearn-*.whl")
    return wheel


def test_an_installed_wheel_lists_and_runs_the_shipped_benchmarks_away_from_the_checkout(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith(SHIPPED)}
    assert shipped == committed_files()  # every spec and manifest, and nothing else

    project = tmp_path / "project"  # an installation inside some other git repository, as a project's venv is
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=60)
    subprocess.run([*git, "-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", "a project"],
                   check=True, timeout=60)
    target = project / "site-packages"
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps",
                           "--no-index", "--target", str(target), str(wheel)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "UNLEARN_BENCHMARK_PATH"}
    env["PYTHONPATH"] = str(target)

    def unlearn(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=300)

    where = unlearn("-c", "import unlearn; print(unlearn.__file__)")
    assert Path(where.stdout.strip()) == target / "unlearn" / "__init__.py", where.stderr
    package = sorted((p, p.stat().st_mtime_ns) for p in (target / "unlearn").rglob("*") if "__pycache__" not in str(p))
    listed = unlearn("-m", "unlearn", "benchmarks")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()}
    assert "digits" in names and names == {Path(n).stem for n in shipped if n.endswith(".yaml")}

    # one cheap cell: the installed digits spec trained for one epoch, scored with accuracy and MIA-Efficacy
    installed = target / SHIPPED / BENCHMARKS
    spec = yaml.safe_load((installed / "digits.yaml").read_text(encoding="utf-8"))
    spec.update(name="digits-tiny", metrics=["accuracy", "mia-efficacy"], report_metrics=[])
    spec["train"].update(epochs=1, oracle_steps="original")  # the oracle check needs the original's steps at 1 epoch
    spec.pop("evaluation", None)
    (elsewhere / "digits-tiny.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    ran = unlearn("-m", "unlearn", "run", "--benchmark", "digits-tiny.yaml", "--methods", "retrain",
                  "--forget", "class:3", "--seeds", "0", "--device", "cpu", "--threads", "1", "--no-progress")
    assert ran.returncode == 0, ran.stderr[-2000:]
    (record_path,) = (elsewhere / "data" / "runs").rglob("*.json")
    record = read_record(record_path)
    assert record.status == "ok" and record.benchmark == "digits-tiny"
    assert record.env.git_commit is None and record.env.git_dirty is None  # site-packages is not a checkout
    copied = elsewhere / "data" / "forget-sets" / "digits" / "class-3.json"
    assert copied.read_bytes() == (target / SHIPPED / FORGET_SETS / "digits" / "class-3.json").read_bytes()
    after = sorted((p, p.stat().st_mtime_ns) for p in (target / "unlearn").rglob("*") if "__pycache__" not in str(p))
    assert after == package  # nothing written into the installed package


def test_specs_in_the_working_directory_win_over_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.delenv("UNLEARN_BENCHMARK_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    shipped = shipped_dir(BENCHMARKS)
    assert shipped == (REPO_ROOT / "benchmarks").resolve()  # a checkout reads its own files
    assert available_benchmarks()["digits"] == shipped / "digits.yaml"
    (tmp_path / "benchmarks").mkdir()
    own = tmp_path / "benchmarks" / "digits.yaml"
    own.write_text((shipped / "digits.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert available_benchmarks()["digits"] == own
    assert available_benchmarks()["mnist1d"] == shipped / "mnist1d.yaml"


CLASS_3 = ForgetSpec.parse("class:3")


def refuse_building(monkeypatch) -> None:
    def build(*args, **kwargs):
        raise AssertionError("built a set the committed manifests hold")

    monkeypatch.setattr(type(CLASS_3.builder), "build", build)


def test_a_committed_manifest_is_copied_into_the_workdir_and_never_written(tmp_path, digits_kind, monkeypatch):
    committed = tmp_path / "committed"
    stored = load_or_build(committed, CLASS_3, digits_kind.dataset, 0)
    source = manifest_path(committed, "digits", CLASS_3, 0)
    before = (source.read_bytes(), source.stat().st_mtime_ns)
    refuse_building(monkeypatch)
    work = tmp_path / "work"
    assert load_or_build(work, CLASS_3, digits_kind.dataset, 0, committed=committed) == stored
    assert manifest_path(work, "digits", CLASS_3, 0).read_bytes() == before[0]
    assert (source.read_bytes(), source.stat().st_mtime_ns) == before
    with pytest.raises(AssertionError, match="built a set"):  # no committed folder: the set is built
        load_or_build(tmp_path / "other", CLASS_3, digits_kind.dataset, 0, committed=tmp_path / "none")


def test_the_commands_take_a_missing_manifest_from_the_shipped_ones(tmp_path, monkeypatch, capsys):
    refuse_building(monkeypatch)
    code = main(["forget-set", "build", "class:3", "--workdir", str(tmp_path), "--device", "cpu", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    copied = manifest_path(tmp_path / "data" / "forget-sets", "digits", CLASS_3, 0)
    assert copied.read_bytes() == manifest_path(shipped_dir(FORGET_SETS), "digits", CLASS_3, 0).read_bytes()


@pytest.mark.parametrize("flaw", ["other data", "corrupt"])
def test_a_committed_manifest_that_does_not_fit_is_passed_over_with_a_note(tmp_path, digits_kind, capsys, flaw):
    committed, work = tmp_path / "committed", tmp_path / "work"
    right = load_or_build(tmp_path / "right", CLASS_3, digits_kind.dataset, 0)
    source = manifest_path(committed, "digits", CLASS_3, 0)
    source.parent.mkdir(parents=True)
    if flaw == "other data":
        fields = {**right.model_dump(), "dataset_fingerprint": "0" * 64}
        fields.pop("checksum")
        source.write_text(ForgetManifest.sealed(**fields).to_json(), encoding="utf-8")
    else:
        source.write_text(json.dumps({"indices": [1, 2]}), encoding="utf-8")
    before = source.read_bytes()
    assert load_or_build(work, CLASS_3, digits_kind.dataset, 0, committed=committed) == right
    note = capsys.readouterr().err
    assert note.startswith(f"unlearn: note: not using the committed manifest: {source}") and note.count("\n") == 1
    assert f"building {manifest_path(work, 'digits', CLASS_3, 0)}" in note
    assert source.read_bytes() == before and sorted(p.name for p in committed.rglob("*")) == ["class-3.json", "digits"]
