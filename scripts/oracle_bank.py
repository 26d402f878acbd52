"""Train an oracle bank on digits three ways (sequential, vmap, process pool) and compare time and agreement.

The bank is what per-example metrics (U-LiRA, epsilon forgetting quality) need: N retrain oracles of one
cell. Here the cell is the digits benchmark's class:3 forget set, so every model trains on its retain
split with the benchmark's recipe, at seeds derive_seed(0, "oracle-bank", str(i)). Test accuracy is the
cell's TA: the test set without class 3. Members of the same seed should agree across modes: exactly
for the process pool (same kernels, one thread each), to rounding for vmap.

    python scripts/oracle_bank.py                      # N=64, both models, 30 epochs
    python scripts/oracle_bank.py --model mlp --n 16
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see machine facts); a user's value wins

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from unlearn.bank_training import MODES, BankTraining, choose_mode, train_models
from unlearn.data import load_dataset
from unlearn.data.tensors import TensorData
from unlearn.device import configure_threads
from unlearn.forget import ForgetSpec, load_or_build
from unlearn.models.base import Blueprint
from unlearn.seeding import derive_seed
from unlearn.spec import load_benchmark

FORGET = "class:3"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Train N oracles of the digits class:3 cell sequentially, with torch.func vmap and with a "
        "process pool; print time, speed-up, test accuracy and agreement between modes per model.",
    )
    parser.add_argument("--n", type=int, default=64, help="models per bank (default 64)")
    parser.add_argument("--model", choices=["small-cnn", "mlp", "both"], default="both", help="default both")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the digits spec's, 30)")
    parser.add_argument("--jobs", type=int, default=2, help="process-pool workers (default 2)")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)} (default all)"
    )
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes:
        parser.error(f"--modes takes a subset of {', '.join(MODES)}, not {args.modes}")
    if args.n < 1 or (args.epochs is not None and args.epochs < 1) or args.jobs < 1:
        parser.error("--n, --epochs and --jobs must be positive")
    return args


def retain_split(dataset, root: Path) -> TensorData:
    """The training samples outside the class:3 forget set, from its manifest (as the harness cuts them)."""
    manifest = load_or_build(root, ForgetSpec.parse(FORGET), dataset, 0)
    keep = torch.ones(len(dataset.train), dtype=torch.bool)
    keep[torch.as_tensor(manifest.indices, dtype=torch.long)] = False
    return dataset.train.where(keep)


def accuracies(bank: BankTraining, test: TensorData) -> list[float]:
    """Each model's accuracy on `test`, in percent (eval mode, no augmentation)."""
    out = []
    with torch.no_grad():
        for model in bank.models:
            model.eval()
            out.append(100.0 * float((model(test.x).argmax(1) == test.y).float().mean()))
    return out


def ks_pvalue(a: list[float], b: list[float]) -> str:
    """Two-sample Kolmogorov-Smirnov p-value of two accuracy samples ('n/a' without scipy)."""
    try:
        from scipy.stats import ks_2samp
    except ImportError:
        return "n/a"
    return f"{ks_2samp(a, b).pvalue:.3f}"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    args = parse_args(argv)
    spec = load_benchmark("digits")
    configure_threads(torch.device("cpu"), spec.cpu_threads)
    recipe = spec.train.model_copy(update={"epochs": args.epochs}) if args.epochs else spec.train
    dataset = load_dataset(spec.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        retain = retain_split(dataset, Path(tmp))
    test = dataset.test.where(dataset.test.y != int(FORGET.partition(":")[2]))
    seeds = [derive_seed(0, "oracle-bank", str(i)) for i in range(args.n)]
    models = ["small-cnn", "mlp"] if args.model == "both" else [args.model]
    c, h, w = dataset.input_shape
    print(
        f"digits {FORGET} oracles: {len(retain)} retain samples, {len(test)} test samples (class 3 excluded), "
        f"N={args.n}, {recipe.epochs} epochs, batch {recipe.batch_size}, torch threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, process jobs {args.jobs}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name in models:
        blueprint = Blueprint(name, c, (h, w), dataset.num_classes, dataset.mean, dataset.std)
        start = time.perf_counter()
        choice, timings = choose_mode(blueprint, retain, recipe, args.n, "cpu", args.jobs)
        took = time.perf_counter() - start
        shown = ", ".join(f"{m} {1e3 * t:.3f}" for m, t in timings.items())
        print(f"{name}: auto would choose {choice} (ms per model-step: {shown}; measured in {took:.2f} s)", flush=True)
        banks: dict[str, BankTraining] = {}
        accs: dict[str, list[float]] = {}
        for mode in args.modes:
            banks[mode] = train_models(blueprint, retain, recipe, seeds, mode=mode, jobs=args.jobs, progress=f"{name} {mode}")
            accs[mode] = accuracies(banks[mode], test)
            print(f"  {mode}: {banks[mode].seconds:.1f} s", flush=True)
        reference = "sequential" if "sequential" in banks else None
        for mode, bank in banks.items():
            acc = accs[mode]
            spread = statistics.stdev(acc) if len(acc) > 1 else 0.0
            row = [name, mode, f"{bank.seconds:.1f}", f"{bank.seconds / args.n:.3f}"]
            if reference is None:
                row += ["", f"{statistics.mean(acc):.2f} ± {spread:.2f}", "", ""]
            else:
                diff = max(abs(a - b) for a, b in zip(acc, accs[reference], strict=True))
                speedup = banks[reference].seconds / bank.seconds
                same = mode == reference
                row += [
                    f"{speedup:.2f}x",
                    f"{statistics.mean(acc):.2f} ± {spread:.2f}",
                    "" if same else f"{diff:.2f}",
                    "" if same else ks_pvalue(acc, accs[reference]),
                ]
            rows.append(row)
    header = ["model", "mode", "seconds", "s/model", "speed-up", "TA % mean ± std", "max |ΔTA| per seed", "KS p"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print()
    for r in [header, *rows]:
        print("  ".join(str(v).ljust(wd) for v, wd in zip(r, widths, strict=True)).rstrip())
    print("\nspeed-up and agreement are against the sequential bank at the same seeds; TA is in percent.")
    print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes on the machine slow the pool most)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
