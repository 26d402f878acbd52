"""Where a run reads and writes: records, the model cache, forget-set manifests and dataset files."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from unlearn.atomic import ensure_writable


@dataclass(frozen=True)
class Workspace:
    """Where a run reads and writes: records, model cache, forget-set manifests, dataset files."""

    results_dir: Path
    cache_dir: Path
    forget_dir: Path
    data_root: Path
    download: bool = False
    committed_forget_dir: Path | None = None
    """Manifests used, read only, where `forget_dir` has none (the CLI: those shipped with the package); None: none."""

    @classmethod
    def at(cls, root: Path | str = ".", **overrides: Any) -> Workspace:
        """The standard layout under `root`: data/runs, data/cache, data/forget-sets, data/datasets."""
        root = Path(root)
        base = cls(root / "data/runs", root / "data/cache", root / "data/forget-sets", root / "data/datasets")
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def check_writable(self) -> None:
        """Raise UserError unless every output directory, the cache's folders too, can be created and written
        (writes nothing)."""
        from unlearn.cache import KINDS as CACHE_KINDS

        for label, path in (
            ("results directory", self.results_dir),
            ("cache directory", self.cache_dir),
            *(("cache directory", self.cache_dir / kind) for kind in CACHE_KINDS),
            ("forget-set directory", self.forget_dir),
        ):
            ensure_writable(path, label)
