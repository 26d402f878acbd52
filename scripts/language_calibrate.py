"""How the tasks-lm methods' hyperparameters were chosen: a small sweep on a seed no grid uses.

    python scripts/language_calibrate.py [--seed 100] [--tasks compare,city] [--workdir DIR]

For each candidate setting of random-label, grad-ascent and npo, the method unlearns `task:T` from the original
model of `--seed` (trained and cached like any original) and the script prints its accuracy (%) on the forget
items (training data) and on the other tasks' VALIDATION items. The held-out items of the forgotten task, whose
accuracy is the finding, and every test split are never read. The rule the spec's values follow: the setting
whose forget accuracy is within 5 points of chance (the paper's premise: the model gives near-random answers on
the examples it was fine-tuned on) with the highest other-task validation accuracy; mean over the tasks.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.forget import ForgetSpec  # noqa: E402
from unlearn.harness import Models, Workspace, load_kind, plan_grid  # noqa: E402
from unlearn.metrics.base import eval_mode, forward_outputs  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402

CANDIDATES: dict[str, list[dict[str, float]]] = {
    "random-label": [{"lr": lr, "epochs": epochs} for lr in (0.003, 0.01, 0.03) for epochs in (3, 5)],
    "grad-ascent": [{"lr": lr} for lr in (1e-4, 3e-4, 1e-3, 3e-3)],
    "npo": [{"lr": lr} for lr in (1e-4, 3e-4, 1e-3)],
}


def accuracy(model: torch.nn.Module, data) -> float:
    with eval_mode(model):
        return forward_outputs(model, data, 512).accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=100, help="a seed no grid uses (default: %(default)s)")
    parser.add_argument("--tasks", default="compare,city", help="tasks to forget (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where data/cache lives")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_benchmark("tasks-lm")
    workspace = Workspace.at(args.workdir)
    kind = load_kind(spec, workspace, torch.device("cpu"))
    models = Models(kind, workspace)
    original = models.load_or_train_original(args.seed)
    cells = {}
    for task in args.tasks.split(","):
        forget = ForgetSpec.parse(f"task:{task}")
        manifest = models.build_manifest(forget, args.seed)
        cells[task] = (manifest, kind.splits(manifest))
        splits = cells[task][1]
        print(f"original, {task}: forget {accuracy(original.model, splits['forget']):.1f}, "
              f"other tasks' val {accuracy(original.model, splits['val']):.1f}")
    for method, candidates in CANDIDATES.items():
        for values in candidates:
            plan = plan_grid(spec, [method], [f"task:{t}" for t in cells], [args.seed],
                             {method: {**spec.hparams.get(method, {}), **values}})
            choice = plan.methods[0]
            forget_acc, other_acc = [], []
            for manifest, splits in cells.values():
                out = models.run_method(choice, original.model, {}, manifest.sha256, splits, args.seed).model
                forget_acc.append(accuracy(out, splits["forget"]))
                other_acc.append(accuracy(out, splits["val"]))
            print(f"{method:13s} {values}: forget {' '.join(f'{a:5.1f}' for a in forget_acc)} "
                  f"(mean {statistics.fmean(forget_acc):5.1f}), other tasks' val "
                  f"{' '.join(f'{a:5.1f}' for a in other_acc)} (mean {statistics.fmean(other_acc):5.1f})", flush=True)


if __name__ == "__main__":
    main()
