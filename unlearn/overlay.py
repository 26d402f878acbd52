"""Tuned-hyperparameter overlays: a benchmark's tuned values in a file the user owns, merged over its spec.

`unlearn tune` on a method that is not built in (a plugin's entry point or a `package.module:Class`) writes
its choice here rather than into the shipped spec: `WORKDIR/hparams/<benchmark>.yaml` by default, or the
file `--hparams-file` names. `unlearn run` with the same workdir (or `--hparams-file`) merges it over the
spec's `hparams:` section, method by method and value by value, and `--hparam` overrides both. The merged
values are the method's hyperparameters, so each record's config (and config hash) holds the values used.

    # Tuned hyperparameters of benchmark digits, ...
    benchmark: digits
    hparams:
      uniform-forget: {lr: 0.03, forget_weight: 0.5}  # tuned: validation gap 1.23 on ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from unlearn.errors import UserError, validation_problem
from unlearn.names import brief
from unlearn.spec import BenchmarkSpec
from unlearn.yaml_input import load_document, read_text

OVERLAY_DIR = "hparams"
"""The folder under a workdir that holds its overlays, one `<benchmark>.yaml` each (not under `benchmarks/`,
whose `*.yaml` files are all read as specs)."""


class Overlay(BaseModel):
    """An overlay file: the benchmark it belongs to and its tuned values per method."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    benchmark: str
    hparams: dict[str, dict[str, Any]] | None = None


def overlay_path(workdir: Path, benchmark: str) -> Path:
    """Where a workdir keeps the overlay of `benchmark`."""
    return Path(workdir) / OVERLAY_DIR / f"{benchmark}.yaml"


def new_overlay(benchmark: str) -> str:
    """The text of an overlay without entries, which `unlearn tune` then fills."""
    return (
        f"# Tuned hyperparameters of benchmark {benchmark}, written by `unlearn tune`. `unlearn run` in this workdir\n"
        "# (or with --hparams-file THIS_FILE) merges them over the spec's `hparams:`, and --hparam overrides both.\n"
        f"benchmark: {benchmark}\n"
        "hparams:\n"
    )


def read_overlay(path: Path, spec: BenchmarkSpec) -> dict[str, dict[str, Any]]:
    """The tuned values of the overlay file `path` for `spec` (see `parse_overlay`)."""
    return parse_overlay(read_text(path, "hyperparameter overlay"), path, spec)


def parse_overlay(text: str, where: Path | str, spec: BenchmarkSpec) -> dict[str, dict[str, Any]]:
    """An overlay's tuned values for `spec`, validated as the spec's are: each method must exist and take
    its values (merged over the spec's own) with their types and ranges; UserError naming `where` otherwise."""
    from unlearn.methods import make_hparams, resolve_method

    data = load_document(text, str(where))
    if not isinstance(data, dict):
        raise UserError(f"{where}: a hyperparameter overlay is a YAML mapping with `benchmark:` and `hparams:`")
    try:
        overlay = Overlay.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{where}: {validation_problem(exc, 'overlay')}") from None
    if overlay.benchmark != spec.name:
        raise UserError(f"{where}: holds tuned values of benchmark {brief(overlay.benchmark)}, not {spec.name!r}")
    values = overlay.hparams or {}
    for name, own in values.items():
        try:
            make_hparams(resolve_method(name), name, {**spec.hparams.get(name, {}), **own})
        except UserError as exc:
            raise UserError(f"{where}: hparams of {brief(name)}: {exc}") from None
    return values


def apply_overlay(spec: BenchmarkSpec, path: Path) -> BenchmarkSpec:
    """`spec` with the overlay at `path` merged over its `hparams:` (a method's values key by key)."""
    merged = dict(spec.hparams)
    for name, own in read_overlay(path, spec).items():
        merged[name] = {**spec.hparams.get(name, {}), **own}
    out = spec.model_copy(update={"hparams": merged})
    out._source_dir = spec.source_dir
    return out


def with_overlay(spec: BenchmarkSpec, workdir: Path, path: Path | None = None) -> tuple[BenchmarkSpec, Path | None]:
    """`spec` with the overlay `path` merged in (it must exist), or else the workdir's overlay of the benchmark
    when there is one; and the overlay file used (None: none)."""
    if path is None:
        path = overlay_path(workdir, spec.name)
        if not path.is_file():
            return spec, None
    return apply_overlay(spec, path), path
