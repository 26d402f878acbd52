"""Do memorised images share a subspace? Overlap of subspace-prune's masks from disjoint sets of planted images.

    python scripts/mask_overlap.py [--benchmark digits-ddpm-memo] [--seeds 0,1,2] [--splits 5] [--workdir DIR]

For each seed the original model of the benchmark is loaded (or trained, and cached in WORKDIR/data/cache, as
`unlearn run` does). Then, for each of `--splits` seeded random splits:

- the planted condition ids are split into two disjoint halves M1 and M2, and subspace-prune's mask (its default
  settings, against the 10 real classes as the normal conditions) is computed from each: IoU(M1, M2);
- two disjoint random sets R1 and R2 of real classes, of the same size, give the control: IoU(R1, R2), masks of
  ordinary conditions against the same normal conditions;
- chance: the IoU of the two memorised masks after shuffling each layer's entries (the same sizes per layer);
- transfer: the extraction rate (the spec's threshold) of M2's conditions after pruning M1's mask, against no
  pruning and against pruning R1's mask of as many weights or fewer.

It prints the mean ± std over splits per seed and over every (seed, split).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.harness import Models, Workspace, load_kind  # noqa: E402
from unlearn.methods.subspace_prune import SubspacePrune  # noqa: E402
from unlearn.metrics import Evaluation  # noqa: E402
from unlearn.metrics.generation import sample_conditions  # noqa: E402
from unlearn.metrics.memorization import Planted, extraction  # noqa: E402
from unlearn.seeding import generator  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402
from unlearn.subspace import Masks, iou, memorisation_masks, prune  # noqa: E402

ROWS = ("IoU(M1, M2)", "IoU(R1, R2)", "IoU(shuffled)", "Extraction M2", "after M1 mask", "after R1 mask",
        "pruned M1 %", "pruned R1 %")


def shuffled(masks: Masks, gen: torch.Generator) -> Masks:
    """Each layer's mask with its entries permuted: the same number of weights per layer, at random places."""
    return {name: m.flatten()[torch.randperm(m.numel(), generator=gen)].view(m.shape) for name, m in masks.items()}


def size(masks: Masks) -> int:
    return sum(int(m.sum()) for m in masks.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="digits-ddpm-memo")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("."))
    args = parser.parse_args()
    spec = load_benchmark(args.benchmark)
    torch.set_num_threads(spec.cpu_threads or torch.get_num_threads())
    kind = load_kind(spec, Workspace.at(args.workdir), torch.device("cpu"))
    models = Models(kind, Workspace.at(args.workdir))
    planted = Planted(kind.train, kind.dataset.planted_ids)
    ids = torch.tensor(planted.planted)
    real = torch.arange(kind.dataset.first_planted)
    half = len(ids) // 2
    settings, threshold = SubspacePrune().settings(), spec.evaluation.memorization.threshold
    n = spec.evaluation.generation.samples_per_class
    print(f"{spec.name}: {len(ids)} planted conditions split {half} + {len(ids) - half}; control: {half} + {half} "
          f"of the {len(real)} real classes; subspace-prune's defaults; extraction threshold {threshold}")
    everything: dict[str, list[float]] = {row: [] for row in ROWS}
    for seed in (int(s) for s in args.seeds.split(",")):
        model = models.load_or_train_original(seed).model.eval()
        ev = Evaluation(model, {}, spec.eval_batch_size, {}, seed, kind.settings())
        per_seed: dict[str, list[float]] = {row: [] for row in ROWS}
        for split in range(args.splits):
            gen = generator(seed, "mask-overlap", str(split))
            m = ids[torch.randperm(len(ids), generator=gen)]
            r = real[torch.randperm(len(real), generator=gen)]
            m1, m2, r1, r2 = m[:half], m[half:], r[:half], r[half:2 * half]
            mask = {name: memorisation_masks(model, c, real, settings, generator(seed, "mask-overlap", name))
                    for name, c in (("M1", m1), ("M2", m2), ("R1", r1), ("R2", r2))}
            conditions = m2.repeat_interleave(n)
            rates = []
            for pruned_by in (None, "M1", "R1"):
                pruned = copy.deepcopy(model)
                if pruned_by:
                    prune(pruned, mask[pruned_by])
                images = sample_conditions(pruned, conditions, ev, "mask-overlap")
                rates.append(100.0 * float(extraction(images, planted, threshold)[0].float().mean()))
            total = sum(p.numel() for p in model.parameters())
            values = (iou(mask["M1"], mask["M2"]), iou(mask["R1"], mask["R2"]),
                      iou(shuffled(mask["M1"], gen), shuffled(mask["M2"], gen)), *rates,
                      100.0 * size(mask["M1"]) / total, 100.0 * size(mask["R1"]) / total)
            for row, value in zip(ROWS, values, strict=True):
                per_seed[row].append(value)
                everything[row].append(value)
        print(f"seed {seed}: " + "; ".join(f"{row} {summary(v)}" for row, v in per_seed.items()))
    print("all: " + "; ".join(f"{row} {summary(v)}" for row, v in everything.items()))


def summary(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3g}"
    return f"{statistics.fmean(values):.3g} ± {statistics.stdev(values):.2g}"


if __name__ == "__main__":
    main()
