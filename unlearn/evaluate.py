"""Score a model unlearned elsewhere against one benchmark cell, and export what such a user starts from.

`evaluate_checkpoint` loads (or trains and caches) the cell's original model and
oracle exactly as `unlearn run` does, loads the checkpoint's weights into the
benchmark's model with strict key and shape checks, and computes the benchmark's
metrics and the gaps to the oracle: the numbers a leaderboard row holds for one seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from unlearn.atomic import atomic_write_text
from unlearn.checkpoints import load_weights_into, read_checkpoint, save_weights
from unlearn.errors import Diverged, UserError
from unlearn.forget import ForgetManifest, ForgetSpec
from unlearn.harness.kinds import Kind, load_kind
from unlearn.harness.models import Models
from unlearn.harness.plan import choose_method, plan_cell, provides
from unlearn.harness.protocols import PROTOCOLS, Protocol, bind_protocol
from unlearn.harness.workspace import Workspace
from unlearn.hashing import sha256_hex, stable_hash
from unlearn.metrics import check_dependencies, gaps
from unlearn.metrics.base import gaps_left_out, undefined_keys
from unlearn.provenance import environment
from unlearn.saliency import SaliencyMask
from unlearn.spec import BenchmarkSpec
from unlearn.train import check_finite, negative_cross_entropy


@dataclass
class CheckpointScore:
    """A checkpoint's metrics next to its cell's oracle and original model."""

    benchmark: str
    forget: str
    seed: int
    checkpoint: str
    checkpoint_sha256: str
    metrics: dict[str, float]
    gaps: dict[str, float]
    oracle_metrics: dict[str, float]
    original_metrics: dict[str, float]
    ideal_oracle_metrics: dict[str, float] | None
    models: dict[str, str]
    config: dict[str, Any]
    """What the scores depend on, as a record's config: benchmark, model and recipe, data, metrics, evaluation
    settings, forget set, seed; and the checkpoint's sha256 instead of a method."""
    config_hash: str
    env: dict[str, Any]
    """Package versions, commit, device and platform: a record's `env` block."""
    gaps_left_out: dict[str, str] = field(default_factory=dict)
    """Gap metrics undefined for the checkpoint or the oracle, left out of `gaps` (as a record's)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cell(
    spec: BenchmarkSpec, workspace: Workspace, device: torch.device, forget: str, seed: int, progress: bool,
    check: Callable[[Kind], None] | None = None,
) -> tuple[Protocol, ForgetSpec, ForgetManifest]:
    """The protocol of one cell, bound (on the manipulated data for a corrective set), its forget spec and manifest;
    `check(kind)` runs before anything is written (the manifest is built on first use)."""
    forget_spec = plan_cell(spec, forget, seed)
    single_cell(forget_spec)
    kind = load_kind(spec, workspace, device)
    kind.check([forget_spec])
    if check is not None:
        check(kind)
    models = Models(kind, workspace, progress)
    manifest = models.build_manifest(forget_spec, seed)
    return bind_protocol(models, forget_spec, seed), forget_spec, manifest


def single_cell(forget: ForgetSpec) -> None:
    """Raise UserError for a forget set whose cells are not one unlearning call (a continual sequence)."""
    if not PROTOCOLS.get(forget.builder.protocol).one_call:
        raise UserError(f"{forget.text} is a sequence of tasks, scored model by model as the method runs; "
                        "one checkpoint cannot be scored against it (use unlearn run with a plugin method)")


def evaluate_checkpoint(
    spec: BenchmarkSpec,
    workspace: Workspace,
    device: torch.device,
    forget: str,
    seed: int,
    checkpoint: Path,
    *,
    allow_pickle: bool = False,
    progress: bool = False,
) -> CheckpointScore:
    """Score `checkpoint` on the cell (spec, forget, seed); bad checkpoints raise UserError before any training."""
    check_dependencies(spec.metrics, provides(spec, runs_methods=False))
    single_cell(ForgetSpec.parse(forget))
    state = read_checkpoint(Path(checkpoint), allow_pickle=allow_pickle)
    state = {k: v.to(device) for k, v in state.items()}

    def loaded(kind: Kind) -> torch.nn.Module:
        """The kind's model holding the checkpoint's weights: UserError unless they fit and are finite."""
        model = kind.new_model(seed)
        load_weights_into(model, state, str(checkpoint))
        try:
            check_finite(model)
        except Diverged as exc:
            raise UserError(f"{checkpoint}: {exc}") from None
        return model

    # checked before the cell's manifest is built, so a refused checkpoint writes nothing
    protocol, forget_spec, manifest = _cell(spec, workspace, device, forget, seed, progress, loaded)
    model = loaded(protocol.kind)  # a corrective cell's kind: the same architecture on manipulated data
    group = protocol.ready(forget_spec, manifest, seed)
    scoring = protocol.scoring
    try:
        scores = scoring.score(scoring.evaluation(model, group, None))
    except Diverged as exc:
        raise UserError(f"{checkpoint}: the model's outputs are not finite ({exc})") from None
    metrics = scores.values
    digest = sha256_hex(Path(checkpoint).read_bytes())
    summary = group.summary()
    config = {**scoring.config(), "forget": forget_spec.text, "forget_sha256": manifest.sha256, "seed": seed,
              "checkpoint_sha256": digest}
    return CheckpointScore(
        benchmark=spec.name,
        forget=forget_spec.text,
        seed=seed,
        checkpoint=str(checkpoint),
        checkpoint_sha256=digest,
        metrics=metrics,
        gaps=gaps(metrics, summary.oracle_metrics, spec.gap_metrics),
        oracle_metrics=summary.oracle_metrics,
        original_metrics=summary.original_metrics,
        ideal_oracle_metrics=summary.ideal_oracle_metrics,
        models=summary.models,
        config=config,
        config_hash=stable_hash(config),
        env=environment(device),
        gaps_left_out=gaps_left_out(spec.gap_metrics, undefined_keys(scores), summary.undefined.get("oracle", {})),
    )


def load_model(
    benchmark: str | BenchmarkSpec,
    checkpoint: str | Path | None = None,
    *,
    seed: int = 0,
    data_root: str | Path | None = None,
    download: bool = False,
    device: str | torch.device = "cpu",
    allow_pickle: bool = False,
) -> torch.nn.Module:
    """The benchmark's model (its architecture, built for its dataset), holding the weights of `checkpoint`.

    `benchmark` is a name (see `unlearn benchmarks`), a spec file or a spec. `checkpoint` is read as `unlearn
    evaluate` reads it (safetensors; a pickle only with `allow_pickle`), and must fit exactly; without it, the
    model keeps the initialisation of the cell's original model at `seed`. Datasets come from `data_root`
    (default: ./data/datasets), as with --data-root. The model is returned in training mode, as built.
    """
    from unlearn.spec import load_benchmark

    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else load_benchmark(str(benchmark))
    device = torch.device(device)
    state = read_checkpoint(Path(checkpoint), allow_pickle=allow_pickle) if checkpoint is not None else None
    kind = load_kind(spec, Workspace.at(".", data_root=data_root, download=download), device)
    model = kind.new_model(seed)
    if state is not None:
        load_weights_into(model, {k: v.to(device) for k, v in state.items()}, str(checkpoint))
    return model


def export_original(
    spec: BenchmarkSpec, workspace: Workspace, device: torch.device, forget: str, seed: int, out: Path,
    *, progress: bool = False,
) -> list[Path]:
    """Write the cell's original model (safetensors) and forget-set manifest (JSON) into `out`."""
    protocol, _, manifest = _cell(spec, workspace, device, forget, seed, progress)
    original = protocol.models.load_or_train_original(seed)
    out = Path(out)
    weights, forget_file = out / "original.safetensors", out / "forget-set.json"
    meta = {"benchmark": spec.name, "seed": seed, "model": spec.model, "cache_key": original.key_hash}
    save_weights(original.model, weights, meta)
    atomic_write_text(forget_file, manifest.to_json())
    return [weights, forget_file]


def export_mask(
    spec: BenchmarkSpec, workspace: Workspace, device: torch.device, forget: str, seed: int, out: Path,
    *, ratio: float | None = None, progress: bool = False,
) -> SaliencyMask:
    """Compute SalUn's saliency mask on the cell's original model and forget set; save it to `out`.

    Ratio and batch size default to the benchmark's `salun` values. The file can be
    inspected with `unlearn mask --show` and reused with `--hparam salun.mask_path=FILE`.
    """
    if spec.kind != "classification":
        raise UserError(f"unlearn mask computes SalUn's classifier mask; {spec.name!r} is a {spec.kind} benchmark "
                        "(diffusion-salun computes its own mask from the diffusion loss)")
    protocol, _, manifest = _cell(spec, workspace, device, forget, seed, progress)
    original = protocol.models.load_or_train_original(seed)
    hp = choose_method(spec, "salun", {} if ratio is None else {"ratio": ratio}).hparams
    forget_data = protocol.kind.splits(manifest)["forget"]
    mask = SaliencyMask.compute(original.model, forget_data, negative_cross_entropy, hp.ratio, hp.batch_size)
    mask = SaliencyMask(mask.masks, mask.ratio, {**mask.metadata, "benchmark": spec.name, "forget": forget,
                                                  "seed": seed, "original": original.key_hash})
    mask.save(out)
    return mask
