"""Files that ship with the package: the benchmark specs and the committed forget-set manifests.

They live where the repository keeps them, benchmarks/*.yaml and data/forget-sets/**.json; `unlearn/_shipped/`
holds two relative symbolic links to those folders, and pyproject.toml's package data copies the YAML and JSON
files behind them (nothing else; scripts/ stays out) into a wheel. So a checkout (editable or on PYTHONPATH) and an
installed wheel find them at the same place, read through importlib.resources, and a checkout reads its own,
current files. Shipped files are read, never written: a run's own manifests go to its workdir.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BENCHMARKS = "benchmarks"
FORGET_SETS = "forget-sets"


def shipped_dir(name: str) -> Path | None:
    """The shipped folder `name` (BENCHMARKS or FORGET_SETS) as a directory on disk, or None where the package has
    none (a wheel built without it, or a package imported from a zip file)."""
    root = resources.files("unlearn") / "_shipped" / name
    return root.resolve() if isinstance(root, Path) and root.is_dir() else None
