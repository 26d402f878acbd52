"""The docs' example method, installed as a real plugin package, run, submitted and shown on the leaderboard."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURE_RESULTS

from unlearn.results import read_record
from unlearn.spec import REPO_ROOT

EXAMPLE = REPO_ROOT / "docs" / "example-plugin"
GUIDE = REPO_ROOT / "docs" / "adding-a-method.md"


def unlearn(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unlearn", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600, check=False)


def test_the_guide_shows_the_code_that_is_tested():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert blocks and blocks[0] == (EXAMPLE / "unlearn_example" / "uniform.py").read_text()


def test_example_plugin_installs_runs_submits_and_appears_on_the_leaderboard(tmp_path, shared_cache):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(EXAMPLE)],
        check=True, capture_output=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)])}  # this checkout's unlearn
    listed = unlearn(env, "methods", cwd=tmp_path)
    assert listed.returncode == 0 and re.search(r"^uniform-forget\s+cls\s+full\s+Fine-tune", listed.stdout, re.M)

    work = tmp_path / "work"
    ran = unlearn(env, "run", "--benchmark", "digits", "--methods", "uniform-forget", "--workdir", str(work),
                  "--cache-dir", str(shared_cache), "--no-progress", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    records = [read_record(p) for p in (work / "data" / "runs").rglob("*.json")]
    assert len(records) == 6 and all(r.status == "ok" for r in records)
    assert all("unlearn-example-method 0.1.0" in r.method_origin for r in records)
    # the method forgets: on class-wise forgetting its forget accuracy falls far below the original model's
    classwise = [r for r in records if r.forget.spec == "class:3"]
    assert all(r.metrics["UA"] > r.original_metrics["UA"] + 50 for r in classwise)

    board = tmp_path / "leaderboard"
    shutil.copytree(FIXTURE_RESULTS, board / "results")
    submitted = unlearn(env, "submit", "--methods", "uniform-forget", "--results-dir", str(work / "data" / "runs"),
                        "--leaderboard", str(board), "--submitter", "example", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    regenerated = unlearn(env, "leaderboard", "--dir", str(board), cwd=tmp_path)
    assert regenerated.returncode == 0, regenerated.stderr
    readme = (board / "README.md").read_text()
    rows = re.findall(r"^\| [0-9]+ \| uniform-forget \|.*\| 3/3 \| (?:better|worse|≈ original) \|$", readme,
                      flags=re.M)
    assert len(rows) == 2, [line for line in readme.splitlines() if "uniform" in line]  # one row per table, 3 seeds
    assert "| uniform-forget | full |" in readme and "| example |" in readme
