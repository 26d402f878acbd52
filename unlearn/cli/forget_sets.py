"""`unlearn forget-set build` and `unlearn forget-set show`: forget-set manifests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unlearn.cli.options import FORGET_FORMS, Parser, add_benchmark, add_runtime_options, print_table, seed_list
from unlearn.cli.runtime import runtime
from unlearn.errors import UserError

BILEVEL_OPTIONS = """\
options of worst-case and worst-case-class sets (:key=value or --option key=value):
  objective=hardest|easiest  hardest: low loss after unlearning (the worst case); easiest: the contrast
  lower=ft|retrain           lower level from the original model, or from a fresh initialisation
  upper_iters=30             upper-level iterations (the reference: 10, which does not settle)
  lower_epochs=2             signSGD epochs over the training set per upper iteration (class-wise: 1)
  lower_lr=0.001             signSGD step
  upper_lr=10000             upper step on the weights (class-wise: 100); 0.01 (the reference's nominal
                             value) never moves them on a trained model's per-sample losses (~1e-3)
  gamma=0                    weight of the ||w||^2 regulariser
  batch_size=64              lower-level batch size

The set kept is the iterate with the best upper objective; the manifest reports whether the
selection settled (converged: overlap >= 0.98 with the previous iterate over the last 3 steps).

Exit codes: 0 built or reused, 2 bad input (unknown kind, a size that leaves an empty set,
a manifest of other data or of another original model).
"""


def add_forget_set(sub: Any) -> None:
    forget_set = sub.add_parser(
        "forget-set", help="build or inspect forget-set manifests (worst-case, corrective, random, class)",
        description="Forget sets are stored as manifests under WORKDIR/data/forget-sets/ (indices, sha256, "
        "provenance, checksum) and reused by every run; a missing one is copied from the manifests shipped with unlearn "
        "if they hold it, else built (by `unlearn run --forget SPEC` too).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=FORGET_FORMS)
    forget_sub = forget_set.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser, required=True)
    build = forget_sub.add_parser(
        "build", help="build (or reuse) the manifests of a forget set for some seeds",
        description="Build the manifest of SPEC for each seed, or reuse a valid stored one, and print where it "
        "is, its size, and for worst-case sets the objective per upper iteration and the cost.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=BILEVEL_OPTIONS)
    build.add_argument("spec", help="a forget spec (worst-case:0.1) or a kind whose size --fraction/--classes gives")
    build.add_argument("--fraction", type=float, help="the fraction, for kinds written KIND:FRACTION")
    build.add_argument("--classes", type=int, help="the number of classes, for worst-case-class")
    build.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="a builder option appended as :KEY=VALUE (repeatable), e.g. --option objective=easiest")
    add_benchmark(build)
    build.add_argument("--seeds", type=seed_list, default=[0], help="comma-separated seeds (default: 0)")
    add_runtime_options(build)
    build.set_defaults(handler=cmd_forget_set_build)
    show = forget_sub.add_parser("show", help="verify a manifest file and print what it holds",
                                 description="Check a manifest's checksum and print its fields and provenance.")
    show.add_argument("path", type=Path)
    show.set_defaults(handler=cmd_forget_set_show)


def _forget_text(args: argparse.Namespace) -> str:
    """The forget spec `forget-set build` names: SPEC, or KIND:SIZE from --fraction/--classes, plus options."""
    from unlearn.forget import BUILDERS

    text = args.spec
    size = args.fraction if args.fraction is not None else args.classes
    if BUILDERS.knows(text) and not BUILDERS.get(text).takes_argument:
        if size is not None or args.option:
            raise UserError(f"the {text} set takes no size or options; write {text}")
        return text
    if ":" not in text:
        if size is None:
            raise UserError(f"give the size of the {text} set: {text}:SIZE, --fraction F or --classes K")
        text = f"{text}:{size:g}"
    elif size is not None:
        raise UserError(f"{text} already names its size; drop --fraction/--classes")
    for option in args.option:
        if "=" not in option:
            raise UserError(f"--option takes KEY=VALUE, not {option!r}")
        text += f":{option}"
    return text


def cmd_forget_set_build(args: argparse.Namespace) -> int:
    from unlearn.forget import ForgetSpec, manifest_path
    from unlearn.harness import Models, load_kind
    from unlearn.harness.plan import plan_cell
    from unlearn.spec import load_benchmark

    spec = load_benchmark(args.benchmark)
    forget = ForgetSpec.parse(_forget_text(args))
    if any(s < 0 for s in args.seeds):
        raise UserError("seeds must be non-negative integers")
    device, workspace, progress = runtime(args, spec)
    kind = load_kind(spec, workspace, device)
    kind.check([forget])
    for seed in args.seeds:
        plan_cell(spec, forget.text, seed)
    models = Models(kind, workspace, progress)
    for seed in args.seeds:
        manifest = models.build_manifest(forget, seed)
        benchmark = spec.name if forget.builder.needs_model else None
        print(manifest_path(workspace.forget_dir, kind.dataset.name, forget, seed, benchmark))
        _describe_manifest(manifest, models.load_or_train_original(seed).seconds if forget.builder.needs_model else None)
    return 0


def cmd_forget_set_show(args: argparse.Namespace) -> int:
    from unlearn.forget import read_manifest

    if not args.path.is_file():
        raise UserError(f"{args.path} does not exist")
    _describe_manifest(read_manifest(args.path), None)
    return 0


def _describe_manifest(manifest: Any, training_seconds: float | None) -> None:
    """Print a manifest's fields (checksum verified on reading) and its provenance, trajectory included."""
    print(f"  {manifest.spec} · seed {manifest.seed} · {manifest.dataset}"
          + (f" · benchmark {manifest.benchmark}" if manifest.benchmark else "")
          + f" · {manifest.size} of {manifest.n_train} training samples"
          + (f" · classes {manifest.forgotten_classes}" if manifest.forgotten_classes else ""))
    print(f"  indices sha256 {manifest.sha256} · checksum ok")
    provenance = dict(manifest.provenance)
    trajectory = provenance.pop("trajectory", None)
    report = provenance.pop("convergence", None)
    for key, value in provenance.items():
        print(f"  {key}: {value}")
    if trajectory:
        named = "selection" in trajectory[0]
        print_table([("iteration", "objective", "set loss", "changed", "jaccard", *(("selection",) if named else ())),
                     *((row["iteration"], f"{row['objective']:.5g}", f"{row['set_loss']:.4g}", _or_dash(row["changed"]),
                        _or_dash(row.get("jaccard")), *((row["selection"],) if named else ()))
                       for row in trajectory)],
                    [9, 12, 10, 8, 8, *((None,) if named else ())], sep=" ", indent="  ")
    if report:
        print(f"  {convergence_line(report)}")
    if training_seconds and "seconds" in provenance:
        print(f"  cost: {provenance['seconds'] / training_seconds:.2f} x training the original model "
              f"({provenance['seconds']:.1f} s vs {training_seconds:.1f} s; a cached set costs nothing)")


def _or_dash(value: Any) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def convergence_line(report: dict[str, Any]) -> str:
    """One line on how a bi-level selection settled (the manifest's `convergence`)."""
    verdict = "converged" if report["converged"] else "NOT converged"
    if report["steps"] and not report["steps_changed"]:
        verdict += " (it never left its random start: the upper step is too small to move it)"
    return (f"{verdict}: the selection changed in {report['steps_changed']} of {report['steps']} upper steps, "
            f"stable for the last {report['stable_last']} (rule: {report['rule']}); the set is iteration "
            f"{report['best_iteration']}'s, the best objective {report['best_objective']:.5g} "
            f"(the last iteration's: {report['last_objective']:.5g})")


PARSERS = (add_forget_set,)
