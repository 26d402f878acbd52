"""Files the suite writes get the permissions an ordinary open() gives (0666 less the umask), so that a shared
`--cache-dir` is readable by the group or others when the umask allows it, and private when it does not."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURE_SPECS

from unlearn.cli import main


def tiny_spec(directory: Path) -> Path:
    """digits trained for one epoch and scored with accuracy and MIA-Efficacy only: permissions do not depend on
    how good the models are."""
    data = yaml.safe_load((FIXTURE_SPECS / "digits.yaml").read_text(encoding="utf-8"))
    data.update(name="digits-tiny", metrics=["accuracy", "mia-efficacy"], report_metrics=[])
    data["train"].update(epochs=1, oracle_steps="original")  # one epoch: the oracle needs the original's steps to
    # pass the oracle check (it is refused more than 3 points of RA below the original's)
    data.pop("evaluation", None)
    path = directory / "digits-tiny.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600)], ids=["umask-022", "umask-077"])
def test_records_cached_models_and_exports_follow_the_umask(tmp_path, capsys, umask, expected):
    spec = tiny_spec(tmp_path)
    work, cache, out = tmp_path / "work", tmp_path / "cache", tmp_path / "start"
    cell = ["--benchmark", str(spec), "--forget", "class:3"]
    common = ["--workdir", str(work), "--cache-dir", str(cache), "--device", "cpu", "--threads", "1", "--no-progress"]
    previous = os.umask(umask)
    try:
        assert main(["run", *cell, "--methods", "retrain", "--seeds", "0", *common]) == 0, capsys.readouterr().err
        assert main(["export", *cell, "--seed", "0", "--out", str(out), *common]) == 0, capsys.readouterr().err
    finally:
        os.umask(previous)
    records = sorted((work / "data" / "runs").rglob("*.json"))
    models = sorted(cache.rglob("*.safetensors"))
    manifests = sorted((work / "data" / "forget-sets").rglob("*.json"))
    exported = [out / "original.safetensors", out / "forget-set.json"]
    assert len(records) == 1 and {p.parent.name for p in models} == {"original", "unlearned"} and manifests
    assert {str(p): oct(mode(p)) for p in [*records, *models, *manifests, *exported]} == {
        str(p): oct(expected) for p in [*records, *models, *manifests, *exported]
    }
