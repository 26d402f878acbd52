"""Forget-set manifests: the exact training indices of a forget set, with how they were made.

Every method and every user evaluates the same set because the set is stored, not
re-drawn: `data/forget-sets/<dataset>/<kind>-<arg>[-seed<S>].json`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unlearn.atomic import atomic_write_text
from unlearn.data.base import Dataset
from unlearn.errors import UserError, validation_problem
from unlearn.forget.base import ForgetSpec
from unlearn.hashing import stable_hash


class ForgetManifest(BaseModel):
    """A forget set: sorted training-set indices, their sha256 and their provenance."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_id: Literal["unlearn.forget-manifest/1"] = Field("unlearn.forget-manifest/1", alias="schema")
    spec: str
    kind: str
    params: dict[str, Any]
    seed: int | None
    dataset: str
    dataset_fingerprint: str
    n_train: int
    builder_version: int
    forgotten_classes: list[int] | None
    size: int
    sha256: str
    indices: list[int]

    @model_validator(mode="after")
    def _indices_consistent(self) -> "ForgetManifest":
        if self.sha256 != indices_sha256(self.indices) or self.size != len(self.indices):
            raise ValueError("indices do not match their recorded sha256 or size")
        if self.indices != sorted(set(self.indices)) or (self.indices and not 0 <= self.indices[0] <= self.indices[-1] < self.n_train):
            raise ValueError("indices must be sorted, unique training-set indices")
        return self

    def to_json(self) -> str:
        """The manifest as JSON: one field per line, the index list on a single line."""
        data = self.model_dump(by_alias=True)
        indices = data.pop("indices")
        head = json.dumps(data, indent=1)
        return head[: head.rfind("}")].rstrip() + f',\n "indices": {json.dumps(indices)}\n}}\n'


def indices_sha256(indices: list[int]) -> str:
    """The sha256 recorded for a list of indices."""
    return stable_hash(indices)


def manifest_path(directory: Path, dataset: str, spec: ForgetSpec, seed: int) -> Path:
    """Where the manifest for (dataset, spec, seed) lives; seed-independent sets omit the seed."""
    arg = re.sub(r"[^A-Za-z0-9.+-]", "_", spec.text.partition(":")[2])
    suffix = f"-seed{seed}" if spec.builder.seeded else ""
    return Path(directory) / dataset / f"{spec.kind}-{arg}{suffix}.json"


def read_manifest(path: Path) -> ForgetManifest:
    """Read and validate a manifest; raise UserError naming the file when it is not a valid one."""
    try:
        return ForgetManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        reason = validation_problem(exc) if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
        raise UserError(f"{path}: invalid forget-set manifest ({reason}); delete it to rebuild") from None


def load_or_build(directory: Path, spec: ForgetSpec, dataset: Dataset, seed: int) -> ForgetManifest:
    """Return the stored manifest for (spec, seed), building and storing it on first use."""
    path = manifest_path(directory, dataset.name, spec, seed)
    builder = spec.builder
    want_seed = seed if builder.seeded else None
    if path.exists():
        manifest = read_manifest(path)
        if manifest.dataset_fingerprint != dataset.fingerprint:
            raise UserError(f"{path} was built from different {dataset.name} data; delete it to rebuild")
        if manifest.spec != spec.text or manifest.seed != want_seed:
            raise UserError(f"{path} holds {manifest.spec} seed {manifest.seed}, not {spec.text} seed {want_seed}")
        return manifest
    built = builder.build(spec.params, dataset, seed)
    indices = [int(i) for i in built.indices]
    manifest = ForgetManifest(
        spec=spec.text,
        kind=spec.kind,
        params=spec.params,
        seed=want_seed,
        dataset=dataset.name,
        dataset_fingerprint=dataset.fingerprint,
        n_train=len(dataset.train),
        builder_version=builder.version,
        forgotten_classes=list(built.forgotten_classes) if built.forgotten_classes is not None else None,
        size=len(indices),
        sha256=indices_sha256(indices),
        indices=indices,
    )
    atomic_write_text(path, manifest.to_json())
    return manifest
