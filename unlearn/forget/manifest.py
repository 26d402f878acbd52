"""Forget-set manifests: the exact training indices of a forget set, with how they were made.

Every method and every user evaluates the same set because the set is stored, not
re-drawn: `data/forget-sets/<dataset>/<kind>-<arg>[-seed<S>].json`, or, for sets selected
with a benchmark's original model (worst-case sets),
`data/forget-sets/<dataset>/<benchmark>/<kind>-<arg>-seed<S>.json`.

A manifest carries a checksum over all its fields: a file changed by hand or cut short
is never used. `load_or_build` sets it aside as `*.corrupt` and rebuilds it (builders are
deterministic, so the rebuilt set is the set that was stored).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unlearn.atomic import atomic_write_text
from unlearn.data.base import Dataset
from unlearn.errors import UserError, validation_problem
from unlearn.forget.base import BuildContext, ForgetSpec, ModelSource
from unlearn.hashing import stable_hash


class ForgetManifest(BaseModel):
    """A forget set: sorted training-set indices, their sha256, their provenance and a checksum of it all."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_id: Literal["unlearn.forget-manifest/2"] = Field("unlearn.forget-manifest/2", alias="schema")
    spec: str
    kind: str
    params: dict[str, Any]
    seed: int | None
    dataset: str
    dataset_fingerprint: str
    benchmark: str | None = None
    """The benchmark whose original model selected the set (None: the set depends on the data only)."""
    n_train: int
    builder_version: int
    forgotten_classes: list[int] | None
    provenance: dict[str, Any] = Field(default_factory=dict)
    """How the set was found: builder hyperparameters, the original model used, an objective trajectory."""
    size: int
    sha256: str
    checksum: str = ""
    """sha256 of every other field; filled in by `sealed`, verified on every read."""
    indices: list[int]

    @model_validator(mode="after")
    def _consistent(self) -> ForgetManifest:
        if self.sha256 != indices_sha256(self.indices) or self.size != len(self.indices):
            raise ValueError("indices do not match their recorded sha256 or size")
        if self.indices != sorted(set(self.indices)) or (self.indices and not 0 <= self.indices[0] <= self.indices[-1] < self.n_train):
            raise ValueError("indices must be sorted, unique training-set indices")
        if self.checksum != self._content_hash():
            raise ValueError("checksum mismatch: the file was changed or corrupted after it was written")
        return self

    def _content_hash(self) -> str:
        return stable_hash(self.model_dump(by_alias=True, exclude={"checksum"}))

    @classmethod
    def sealed(cls, **fields: Any) -> ForgetManifest:
        """A new manifest with its checksum computed."""
        unsealed = cls.model_construct(**fields)
        return cls.model_validate({**unsealed.model_dump(by_alias=True), "checksum": unsealed._content_hash()})

    def to_json(self) -> str:
        """The manifest as JSON: one field per line, the index list on a single line."""
        data = self.model_dump(by_alias=True)
        indices = data.pop("indices")
        head = json.dumps(data, indent=1)
        return head[: head.rfind("}")].rstrip() + f',\n "indices": {json.dumps(indices)}\n}}\n'


def indices_sha256(indices: list[int]) -> str:
    """The sha256 recorded for a list of indices."""
    return stable_hash(indices)


def manifest_path(directory: Path, dataset: str, spec: ForgetSpec, seed: int, benchmark: str | None = None) -> Path:
    """Where the manifest for (dataset, spec, seed) lives; seed-independent sets omit the seed, sets selected
    with a benchmark's model live in a folder of that benchmark."""
    arg = re.sub(r"[^A-Za-z0-9.+=-]", "_", spec.text.partition(":")[2])
    suffix = f"-seed{seed}" if spec.builder.seeded else ""
    folder = Path(directory) / dataset
    if spec.builder.needs_model:
        if benchmark is None:
            raise ValueError(f"the manifest of {spec.text} belongs to a benchmark; name it")
        folder = folder / benchmark
    return folder / f"{spec.kind}{'-' + arg if arg else ''}{suffix}.json"


def read_manifest(path: Path) -> ForgetManifest:
    """Read and validate a manifest; raise UserError naming the file when it is not a valid one."""
    try:
        return ForgetManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError, RecursionError) as exc:  # ValueError: not UTF-8, not JSON
        if isinstance(exc, ValidationError):
            reason = validation_problem(exc)
        elif isinstance(exc, UnicodeDecodeError):
            reason = f"not UTF-8 text: byte {exc.start}"
        elif isinstance(exc, RecursionError):
            reason = "nested too deeply"
        else:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path}: invalid forget-set manifest ({reason}); delete it to rebuild") from None


def load_or_build(
    directory: Path, spec: ForgetSpec, dataset: Dataset, seed: int,
    models: ModelSource | None = None, *, progress: bool = False, committed: Path | None = None,
) -> ForgetManifest:
    """Return the stored manifest for (spec, seed), building and storing it on first use.

    Sets selected with a model (`builder.needs_model`) need the benchmark's `models`. A stored
    manifest of other data, or of another original model, is refused (nothing is written); a
    corrupt one is set aside and rebuilt. When `directory` has none, a manifest of the same set in
    `committed` (read only: the manifests shipped with the package) is copied into `directory` instead
    of building it, if it fits this data and original model; one that does not is passed over with a note.
    """
    builder = spec.builder
    if builder.needs_model and models is None:
        raise UserError(f"{spec.text} is selected with a benchmark's original model; build it through "
                        "`unlearn forget-set build` or `unlearn run`")
    builder.check(spec.params, dataset)
    benchmark = models.benchmark if builder.needs_model and models is not None else None
    path = manifest_path(directory, dataset.name, spec, seed, benchmark)
    want_seed = seed if builder.seeded else None
    original_key = models.original_key(seed) if benchmark is not None and models is not None else None

    def misfit(manifest: ForgetManifest, where: Path) -> str | None:
        if manifest.dataset_fingerprint != dataset.fingerprint:
            return f"{where} was built from different {dataset.name} data"
        if manifest.spec != spec.text or manifest.seed != want_seed:
            return f"{where} holds {manifest.spec} seed {manifest.seed}, not {spec.text} seed {want_seed}"
        if manifest.builder_version != builder.version:
            return (f"{where} was built by version {manifest.builder_version} of the {spec.kind} builder, which selects "
                    f"differently from the current version {builder.version}")
        if original_key is not None and manifest.provenance.get("original_model") != original_key:
            return f"{where} was selected with a different original model of {benchmark} (its model or recipe changed)"
        return None

    if path.exists():
        try:
            manifest = read_manifest(path)
        except UserError as exc:
            aside = path.with_name(path.name + ".corrupt")
            path.replace(aside)
            print(f"unlearn: warning: {exc}; moved it to {aside.name} and rebuilding", file=sys.stderr)
        else:
            problem = misfit(manifest, path)
            if problem is not None:
                raise UserError(f"{problem}; delete it to rebuild")
            return manifest
    elif committed is not None and (shipped := manifest_path(committed, dataset.name, spec, seed, benchmark)).is_file():
        try:
            manifest = read_manifest(shipped)
            problem = misfit(manifest, shipped)
        except UserError as exc:
            problem = str(exc).removesuffix("; delete it to rebuild")
        if problem is None:
            atomic_write_text(path, manifest.to_json(), "forget-set manifest")
            return manifest
        print(f"unlearn: note: not using the committed manifest: {problem}; building {path}", file=sys.stderr)
    built = builder.build(spec.params, BuildContext(dataset, seed, models, progress))
    indices = [int(i) for i in built.indices]
    provenance = {**built.provenance, **({"original_model": original_key} if original_key is not None else {})}
    manifest = ForgetManifest.sealed(
        spec=spec.text,
        kind=spec.kind,
        params=spec.params,
        seed=want_seed,
        dataset=dataset.name,
        dataset_fingerprint=dataset.fingerprint,
        benchmark=benchmark,
        n_train=len(dataset.train),
        builder_version=builder.version,
        forgotten_classes=list(built.forgotten_classes) if built.forgotten_classes is not None else None,
        provenance=provenance,
        size=len(indices),
        sha256=indices_sha256(indices),
        indices=indices,
    )
    atomic_write_text(path, manifest.to_json(), "forget-set manifest")
    return manifest
