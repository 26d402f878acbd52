"""MoTE's forcing check: does routing to the forget set's experts make the model predict the forgotten class?

    python scripts/force_experts.py [--benchmark digits-moe] [--forget class:3] [--ks 1,2,4] [--seeds 0,1,2]
                                    [--workdir DIR]

For each seed the original model is loaded (or trained and cached in WORKDIR/data/cache, as `unlearn run` does),
and expert-deactivation runs on the cell's splits with `mode=off` and `mode=force` for each k. It prints, on the
test images of the other classes, the share (%) predicted as the forgotten class and the mean probability (%) of
that class, for the original model and both modes: mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from unlearn.forget import ForgetSpec  # noqa: E402
from unlearn.harness import Models, Workspace, load_kind  # noqa: E402
from unlearn.harness.plan import choose_method  # noqa: E402
from unlearn.spec import load_benchmark  # noqa: E402


@torch.no_grad()
def towards(model: torch.nn.Module, x: torch.Tensor, forgotten: list[int]) -> tuple[float, float]:
    """(% of `x` predicted as a forgotten class, mean probability of the forgotten classes in %)."""
    probs = torch.softmax(model.eval()(x), dim=1)
    gone = torch.tensor(forgotten)
    return (100.0 * float(torch.isin(probs.argmax(1), gone).float().mean()),
            100.0 * float(probs[:, gone].sum(1).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="digits-moe")
    parser.add_argument("--forget", default="class:3")
    parser.add_argument("--ks", default="1,2,4")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", type=Path, default=Path("."))
    args = parser.parse_args()
    spec = load_benchmark(args.benchmark)
    torch.set_num_threads(spec.cpu_threads or torch.get_num_threads())
    kind = load_kind(spec, Workspace.at(args.workdir), torch.device("cpu"))
    models = Models(kind, Workspace.at(args.workdir))
    rows: dict[str, list[tuple[float, float]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        manifest = models.build_manifest(ForgetSpec.parse(args.forget), seed)
        splits = kind.splits(manifest)
        forgotten = list(manifest.forgotten_classes or ())
        original = models.load_or_train_original(seed).model
        rows.setdefault("original", []).append(towards(original, splits["test"].x, forgotten))
        for k in (int(v) for v in args.ks.split(",")):
            for mode in ("off", "force"):
                choice = choose_method(spec, "expert-deactivation", {"k": k, "mode": mode})
                out = models.run_method(choice, original, kind.original_key(seed), manifest.sha256, splits, seed)
                rows.setdefault(f"k={k} {mode}", []).append(towards(out.model, splits["test"].x, forgotten))
    print(f"{spec.name}, {args.forget}, test images of the other classes, mean ± std over seeds {args.seeds}")
    print(f"{'model':12} {'predicted forgotten %':>24} {'p(forgotten) %':>18}")
    for name, values in rows.items():
        cells = []
        for i in (0, 1):
            v = [row[i] for row in values]
            cells.append(f"{statistics.fmean(v):6.1f} ± {statistics.stdev(v) if len(v) > 1 else 0:4.1f}")
        print(f"{name:12} {cells[0]:>24} {cells[1]:>18}")


if __name__ == "__main__":
    main()
