"""Calibrate the extraction threshold of a benchmark that plants images (default digits-ddpm-memo).

    python scripts/memorization.py [--benchmark digits-ddpm-memo] [--seeds 0] [--workdir DIR]

For each seed it loads or trains the original model and the retrained oracle (cached in WORKDIR/data/cache, as
`unlearn run` does), samples every planted condition with the spec's pinned sampler settings, and prints the
distribution (min, 5 %, median, 95 %, max) of each sample's RMS pixel distance to the nearest planted image, the
share whose nearest training image is a planted one, and the extraction rate at the spec's threshold. For scale it
prints the same distance from each real training image to its nearest other real image. A threshold is good when
the original's samples fall below it and the oracle's (which never saw the planted images) above it. It also
prints how long the original model took to train (from the cache's record of it).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.forget import ForgetSpec  # noqa: E402
from unlearn.harness import Models, Workspace, load_kind  # noqa: E402
from unlearn.metrics import Evaluation  # noqa: E402
from unlearn.metrics.generation import sample_conditions  # noqa: E402
from unlearn.metrics.memorization import Planted, extraction, rms_distances  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402


def quantiles(values: torch.Tensor) -> str:
    q = torch.quantile(values.float(), torch.tensor([0.0, 0.05, 0.5, 0.95, 1.0]))
    return " ".join(f"{v:.3f}" for v in q.tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="digits-ddpm-memo")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--workdir", default=".")
    args = parser.parse_args()
    spec = load_benchmark(args.benchmark)
    torch.set_num_threads(spec.cpu_threads or torch.get_num_threads())
    workspace = Workspace.at(Path(args.workdir))
    kind = load_kind(spec, workspace, torch.device("cpu"))
    models = Models(kind, workspace)
    planted = Planted(kind.train, kind.dataset.planted_ids)
    threshold = spec.evaluation.memorization.threshold
    real = kind.train.x[~planted.planted_rows()]
    d = rms_distances(real, real)
    d.fill_diagonal_(float("inf"))
    print(f"real image -> nearest other real image: {quantiles(d.min(1).values)} (min 5% median 95% max)")
    n = spec.evaluation.generation.samples_per_class
    conditions = torch.tensor(planted.planted).repeat_interleave(n)
    manifest = models.build_manifest(ForgetSpec.parse("memorized"), 0)
    for seed in [int(s) for s in args.seeds.split(",")]:
        original = models.load_or_train_original(seed)
        print(f"seed {seed}: original trained in {original.seconds:.0f} s ({'cached' if original.hit else 'now'})")
        oracle = models.run_method(models.oracle_choice, original.model, kind.original_key(seed), manifest.sha256,
                                   kind.splits(manifest), seed)
        for name, model in (("original", original.model), ("oracle", oracle.model)):
            ev = Evaluation(model, {}, spec.eval_batch_size, {}, seed, kind.settings())
            images = sample_conditions(model, conditions, ev, "per-class")
            hit, distance = extraction(images, planted, threshold)
            nearest_planted = extraction(images, planted, float("inf"))[0]
            print(f"  {name:8s} distance to nearest planted: {quantiles(distance)}; nearest is planted "
                  f"{100 * nearest_planted.float().mean():.1f} %; extraction at {threshold}: {100 * hit.float().mean():.1f} %")


if __name__ == "__main__":
    main()
