"""What produced a result: package versions, git commit, device, platform."""

from __future__ import annotations

import platform
import subprocess
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from unlearn.spec import REPO_ROOT

PACKAGES = ("unlearn", "torch", "torchvision", "numpy", "scikit-learn", "pandas", "safetensors", "pydantic")


def _git(*args: str) -> str | None:
    """git's answer about the checkout unlearn runs from; None for an installed package (whose site-packages may
    lie inside some other repository, whose commit is not unlearn's) or when git fails."""
    if not (REPO_ROOT / ".git").exists():  # a folder in a clone, a file in a worktree
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def package_version(name: str) -> str:
    """The installed version of distribution `name`, or 'not installed'."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def git_commit() -> str | None:
    """The commit of the repository unlearn runs from, or None outside a git checkout."""
    return _git("rev-parse", "HEAD") or None


@lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    versions = {name: package_version(name) for name in PACKAGES}
    commit = git_commit()
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit or None,
        "git_dirty": (dirty != "") if dirty is not None and commit else None,
    }


def environment(device: torch.device) -> dict[str, Any]:
    """The environment block every result record carries."""
    return {**_static(), "device": str(device), "torch_threads": torch.get_num_threads()}
