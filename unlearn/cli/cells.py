"""One cell of a benchmark outside a grid: `unlearn evaluate`, `unlearn export` and `unlearn mask`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from unlearn.cli.options import add_benchmark, add_cell_options, add_runtime_options, print_table
from unlearn.cli.runtime import runtime
from unlearn.errors import UserError

EVALUATE_EPILOG = """\
Checkpoints are safetensors files holding the benchmark model's state dict (keys and
shapes must match exactly), e.g. safetensors.torch.save_file(model.state_dict(), 'm.safetensors').
In Python, unlearn.load_model(BENCHMARK, CHECKPOINT) rebuilds the model with those weights.
Pickle files (torch.save's .pt/.pth/.bin) can run code when loaded and are refused; convert
a pickled state dict once, where you trust it (this never overwrites an existing file):
  python -c "import torch, safetensors.torch as st; sd = torch.load('m.pt', weights_only=True); open('m.safetensors', 'xb').write(st.save(sd))"
or pass --allow-pickle to load it with torch.load(weights_only=True). A whole model saved
with torch.save(model) is not a state dict: save model.state_dict() where it was trained.

--json prints, and --output writes (atomically), the scores with the provenance a result
record has: config (benchmark, model, data, metrics, forget set, seed, checkpoint sha256),
config_hash and env (package versions, commit, device).

Exit codes: 0 scored, 2 bad input (unknown cell, unreadable or mismatched checkpoint).
"""


def add_evaluate(sub: Any) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        help="score a checkpoint unlearned elsewhere against a cell's oracle",
        description="Score a model unlearned outside this harness on one cell (benchmark, forget set, seed): "
        "the same metrics and gaps to the oracle as the leaderboard. The cell's original model and oracle are "
        "loaded from the cache or trained. Start from `unlearn export`'s original.safetensors.",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_cell_options(evaluate)
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="the unlearned model (.safetensors)")
    evaluate.add_argument("--allow-pickle", action="store_true",
                          help="accept a PyTorch pickle (.pt/.pth/.bin), loaded with torch.load(weights_only=True)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    evaluate.add_argument("--output", type=Path, metavar="PATH",
                          help="also write that JSON object to PATH (atomically)")
    add_runtime_options(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from unlearn.evaluate import evaluate_checkpoint
    from unlearn.leaderboard import AVG_GAP
    from unlearn.spec import load_benchmark

    spec = load_benchmark(args.benchmark)
    if args.output is not None:  # said before the scoring, not after
        from unlearn.atomic import ensure_writable, refuse_directory

        refuse_directory(args.output, "evaluation output")
        ensure_writable(args.output.absolute().parent, "output directory")
    device, workspace, progress = runtime(args, spec)
    score = evaluate_checkpoint(spec, workspace, device, args.forget, args.seed, args.checkpoint,
                                allow_pickle=args.allow_pickle, progress=progress)
    text = json.dumps(score.to_dict(), indent=1, sort_keys=True)
    if args.output is not None:
        from unlearn.atomic import atomic_write_text

        atomic_write_text(args.output, text + "\n", "evaluation output")
        print(f"unlearn: wrote {args.output}", file=sys.stderr)
    if args.json:
        print(text)
        return 0
    columns = [*spec.gap_metrics, AVG_GAP, *spec.report_metrics]
    rows = [("checkpoint", {**score.metrics, **{k: v for k, v in score.gaps.items() if k == AVG_GAP}}),
            ("retrain (oracle)", {**score.oracle_metrics, AVG_GAP: 0.0}),
            ("original", score.original_metrics)]
    print(f"{score.benchmark} · forget {score.forget} · seed {score.seed} · {score.checkpoint}")
    print_table([["", *columns], *([label, *(f"{values[c]:.2f}" if c in values else "—" for c in columns)]
                                   for label, values in rows)],
                [-18, *[14] * len(columns)])
    for key, why in score.gaps_left_out.items():  # an undefined metric shows as —
        print(f"Avg. Gap leaves out {key}: {why}")
    return 0


def add_export(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="write a cell's original model and forget set, to unlearn it outside the harness",
        description="Write OUT/original.safetensors (the cell's original model, trained or taken from the cache) "
        "and OUT/forget-set.json (the forget set's training-split indices and their sha256).",
    )
    add_cell_options(export)
    export.add_argument("--out", type=Path, required=True, help="output directory")
    add_runtime_options(export)
    export.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from unlearn.evaluate import export_original
    from unlearn.spec import load_benchmark

    spec = load_benchmark(args.benchmark)
    device, workspace, progress = runtime(args, spec)
    for path in export_original(spec, workspace, device, args.forget, args.seed, args.out, progress=progress):
        print(path)
    return 0


def add_mask(sub: Any) -> None:
    mask = sub.add_parser(
        "mask",
        help="compute, save and inspect SalUn's saliency mask for a cell",
        description="Compute SalUn's saliency mask (top RATIO of |gradient of -CE on the forget set| over all "
        "weights of the cell's original model) and save it as safetensors, or --show a saved mask. Print the "
        "kept fraction per tensor. Reuse a mask with `unlearn run --hparam salun.mask_path=FILE`.",
    )
    mask.add_argument("--show", type=Path, metavar="FILE", help="inspect a saved mask instead of computing one")
    add_benchmark(mask)
    mask.add_argument("--forget", help="one forget spec, e.g. class:3 (required unless --show)")
    mask.add_argument("--seed", type=int, default=0, help="the cell's seed (default: 0)")
    mask.add_argument("--ratio", type=float, help="fraction of weights kept (default: the benchmark's salun ratio)")
    mask.add_argument("--out", type=Path, help="output file (required unless --show)")
    add_runtime_options(mask)
    mask.set_defaults(handler=cmd_mask)


def cmd_mask(args: argparse.Namespace) -> int:
    from unlearn.saliency import SaliencyMask

    if args.show is not None:
        mask = SaliencyMask.load(args.show)
    else:
        from unlearn.evaluate import export_mask
        from unlearn.spec import load_benchmark

        if args.forget is None or args.out is None:
            raise UserError("give --forget and --out to compute a mask, or --show FILE to inspect one")
        spec = load_benchmark(args.benchmark)
        if args.ratio is not None and not 0 < args.ratio <= 1:
            raise UserError(f"--ratio must be in (0, 1], got {args.ratio}")
        device, workspace, progress = runtime(args, spec)
        mask = export_mask(spec, workspace, device, args.forget, args.seed, args.out, ratio=args.ratio,
                           progress=progress)
        print(f"unlearn: wrote {args.out}", file=sys.stderr)
    print(f"ratio {mask.ratio:g}: {mask.kept()} of {mask.total()} weights kept ({100 * mask.kept_fraction():.1f} %)")
    for key, value in sorted(mask.metadata.items()):
        print(f"  {key}: {value}")
    print_table([("tensor", "shape", "kept", "of", "%"),
                 *((e.name, "x".join(str(d) for d in e.shape), e.kept, e.total, f"{100 * e.fraction:.1f}")
                   for e in mask.summary())],
                [-28, 18, 10, 10, 8])
    return 0


PARSERS = (add_evaluate, add_export, add_mask)
