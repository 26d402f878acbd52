"""The `unlearn` command: run a benchmark grid, list methods and benchmarks."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

import unlearn  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from unlearn.errors import UserError

DESCRIPTION = """\
unlearn: an open machine-unlearning benchmark suite.

  unlearn run                      run the default digits benchmark and print its table
  unlearn run --methods retrain,finetune --forget class:3 --seeds 0,1,2
  unlearn evaluate --forget class:3 --checkpoint m.safetensors
                                   score a model unlearned elsewhere against the cell's oracle
  unlearn mask --forget class:3 --out m.safetensors
                                   save SalUn's saliency mask for a cell and show where it falls
  unlearn forget-set build worst-case --fraction 0.1 --seeds 0,1,2
                                   select the worst-case 10 % forget sets (bi-level) and store their manifests
  unlearn tune --method salun --forget random:0.1,class:3
                                   choose a method's lr and key knobs on validation data; write them into the spec
  unlearn submit --methods M       check M's records (complete grid, same oracle); copy them to leaderboard/
  unlearn leaderboard              regenerate leaderboard/ (tables, CSV, HTML, plots) from its records
  unlearn reproduce --cells 3      rerun 3 random committed cells from scratch; exit 1 unless they give their numbers
  unlearn methods                  list unlearning methods
  unlearn benchmarks               list benchmarks
"""

FORGET_FORMS = """\
forget sets (--forget, comma-separated):
  random:F     a uniform random fraction F of the training set, 0 < F < 1 (drawn per seed)
  class:C      every training sample of class C (TA then covers the other classes)
  worst-case:F[:key=value...]
               the fraction F hardest to forget, selected by bi-level optimisation with the
               seed's original model (built on first use, ~1 training run; `unlearn forget-set
               build` shows the options, e.g. :objective=easiest for the easiest set)
  worst-case-class:K[:key=value...]
               the K classes hardest to forget (the same selection with weights over classes)
  corrective:poison:P:I[:target=T][:patch=S]
               poison a fraction P of the training set before the original model trains
               (an SxS corner trigger at the maximum pixel value, relabelled to T, default 0)
               and forget the identified fraction I (0 < I <= 1) of the poisoned samples
  corrective:interclass:A-B:I[:fraction=F]
               swap the labels of half (F) of classes A and B; forget the identified part I
  continual:TxK[:shots=S]  or  continual:A+B/C+D[:shots=S]
               a sequence of class-forgetting tasks (T tasks of K classes in a seeded order, or
               named), each unlearned from the previous task's output; shots=S gives methods S
               retained samples per class (the few-shot track). Records hold Acc_f, Acc_r,
               Acc_o and H after every task (see docs/continual.md; benchmark digits-vit)
  Corrective cells also record the attack success rate (ASR), the accuracy on the manipulated
  test images with true labels (Manip-Acc) and an ideal oracle retrained without every
  manipulated sample (the gaps use the oracle retrained without the identified ones).
"""

RUN_EPILOG = FORGET_FORMS + """

methods (--methods, comma-separated): a name from `unlearn methods`, a plugin
registered in the `unlearn.methods` entry-point group, or `package.module:Class`.

Hyperparameters: each method starts from its reference defaults, the benchmark's
tuned values (the `hparams:` section of its spec) override them, the workdir's overlay
hparams/<benchmark>.yaml (or --hparams-file; `unlearn tune` writes it for plugin
methods) overrides those, and --hparam METHOD.NAME=VALUE overrides all, e.g.
--hparam finetune.lr=0.05. Records hold the values used.

Outputs (under --workdir, default the current directory):
  data/runs/<benchmark>/<forget>/<method>/seed<S>-<hash>.json   one record per cell
  data/cache/                       original models and oracles (safetensors), reused
  data/forget-sets/<dataset>/       forget-set index manifests, reused (or copied from those shipped)
A rerun skips every cell whose record exists (use --retry-failed to rerun failed ones).

Executors: --executor process --jobs N runs the (forget set, seed) groups in N local worker
processes, --executor ray [--address HOST:PORT] as Ray tasks (pip install -e ".[ray]"), and
--executor slurm [--slurm KEY=VALUE ...] as SLURM jobs through submitit (pip install -e
".[slurm]"; the workdir must be on a shared file system). The records and numbers are those of
a serial run; a worker that dies fails only the cell it ran.

Exit codes: 0 success (failed cells are recorded and reported), 2 bad input.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one `--help` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}")
    return items


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got {text!r}") from None


def _threads(text: str) -> int:
    from unlearn.spec import MAX_THREADS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of threads, got {text!r}") from None
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"threads must be between 1 and {MAX_THREADS}, got {value}")
    return value


def _slurm_option(text: str) -> tuple[str, Any]:
    from unlearn.yaml_input import load_document

    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return name.strip(), load_document(value, f"--slurm {name.strip()}", max_nodes=1000) if value else value
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _hparam(text: str) -> tuple[str, str, str]:
    target, eq, value = text.partition("=")
    method, dot, name = target.rpartition(".")
    if not eq or not dot or not method or not name:
        raise argparse.ArgumentTypeError(f"expected METHOD.NAME=VALUE, got {text!r}")
    return method, name, value


BILEVEL_OPTIONS = """\
options of worst-case and worst-case-class sets (:key=value or --option key=value):
  objective=hardest|easiest  hardest: low loss after unlearning (the worst case); easiest: the contrast
  lower=ft|retrain           lower level from the original model, or from a fresh initialisation
  upper_iters=10             upper-level iterations (the reference's default)
  lower_epochs=2             signSGD epochs over the training set per upper iteration (class-wise: 1)
  lower_lr=0.001             signSGD step
  upper_lr=10000             upper step on the weights; 0.01 (the reference's nominal value) never
                             moves them on a trained model's per-sample losses (~1e-3)
  gamma=0                    weight of the ||w||^2 regulariser
  batch_size=64              lower-level batch size

Exit codes: 0 built or reused, 2 bad input (unknown kind, a size that leaves an empty set,
a manifest of other data or of another original model).
"""


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


TUNE_EPILOG = """\
Each trial is a normal grid run (records under data/tune/, reused on a rerun); a trial
with any failed cell (e.g. a diverged run) is out. Ties go to the earlier trial. The
trials and the choice are saved in data/tune/<benchmark>/tuning/<method>.json.

Where the choice goes: a built-in method's into the spec's `hparams:` entry for it (only
that line changes). A method that is not built in (a plugin's entry point, or
package.module:Class) never writes into the spec unless --write-spec is given: its choice
goes to an overlay file you own, WORKDIR/hparams/<benchmark>.yaml (or --hparams-file
PATH), which `unlearn run` with the same --workdir (or --hparams-file) merges over the
spec's `hparams:`. The file written is printed.

Exit codes: 0 chosen (and written unless --no-write), 2 bad input or every trial failed.
"""


REPRODUCE_EPILOG = """\
Exact equality is expected on CPU with the records' package versions (pip install -e ".[dev]"
-c constraints.txt) and thread count; elsewhere (a GPU, other versions) pass --tolerance, and the
output says which tolerance it used. A draw is the same for the same records and --pick-seed.

Exit codes: 0 every cell reproduced, 1 a cell differs or was made under an older spec, 2 bad input.
"""


def _runtime_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by commands that load a benchmark's data and models."""
    parser.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--threads", type=_threads, metavar="N",
                        help="CPU threads for torch and the BLAS pools, 1 to 1024 (default: the benchmark's cpu_threads)")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="root of data/runs, data/cache, data/forget-sets")
    parser.add_argument("--cache-dir", type=Path, help="trained-model cache, shareable (default: WORKDIR/data/cache)")
    parser.add_argument("--data-root", type=Path,
                        help="dataset files for torchvision datasets (default: WORKDIR/data/datasets)")
    parser.add_argument("--download", action="store_true", help="allow downloading a missing torchvision dataset")
    _progress_options(parser)


def _progress_options(parser: argparse.ArgumentParser) -> None:
    """--progress / --no-progress: bars on a terminal, a heartbeat line in a log (see unlearn.progress)."""
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", dest="progress", action="store_true", default=True,
                       help="report progress (the default): bars on a terminal; when stderr is a file, one "
                            "timestamped line at least every 30 s of a long phase (training, banks, cells)")
    shown.add_argument("--no-progress", dest="progress", action="store_false", help="report no progress")


def _cell_options(parser: argparse.ArgumentParser) -> None:
    """--benchmark, --forget and --seed naming one cell."""
    parser.add_argument("--benchmark", default="digits", help="benchmark name or spec file (default: digits)")
    parser.add_argument("--forget", required=True, help="one forget spec, e.g. class:3 or random:0.1")
    parser.add_argument("--seed", type=int, default=0, help="the cell's seed (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="unlearn", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run a grid of methods × forget sets × seeds and print the table",
        description="Run a benchmark grid (default: the benchmark's own grid) and print each metric's mean ± 95 % CI "
                    "half-width over seeds, with ranks from paired tests over seeds.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--benchmark", default="digits", help="benchmark name or spec file (default: digits)")
    run.add_argument("--methods", type=_csv, help="comma-separated methods (default: the benchmark's grid)")
    run.add_argument("--forget", type=_csv, help="comma-separated forget specs, e.g. random:0.1,class:3")
    run.add_argument("--seeds", type=_seeds, help="comma-separated seeds, e.g. 0,1,2")
    run.add_argument("--hparam", type=_hparam, action="append", default=[], metavar="METHOD.NAME=VALUE",
                     help="override one hyperparameter (repeatable)")
    run.add_argument("--hparams-file", type=Path, metavar="PATH",
                     help="tuned values merged over the spec's `hparams:` (default: WORKDIR/hparams/BENCHMARK.yaml "
                     "when it exists, where `unlearn tune` writes a plugin method's choice)")
    run.add_argument("--results-dir", type=Path, help="where records go (default: WORKDIR/data/runs)")
    run.add_argument("--retry-failed", action="store_true", help="rerun cells whose record says failed")
    run.add_argument("--executor", default="serial", metavar="NAME",
                     help="serial (default: one cell after another here), process (a pool of --jobs local worker "
                     "processes), ray (Ray tasks, on a local instance or on the cluster at --address) or slurm "
                     "(SLURM jobs through submitit, options from --slurm)")
    run.add_argument("--jobs", type=int, metavar="N",
                     help="process: worker processes; ray: CPUs of the local instance (default: the CPUs available); "
                     "slurm: jobs queued at a time (default: all)")
    run.add_argument("--address", metavar="HOST:PORT",
                     help="ray: the cluster to run on (`ray start --head` prints it); default: a local instance")
    run.add_argument("--slurm", type=_slurm_option, action="append", default=[], metavar="KEY=VALUE",
                     help="slurm: a submitit job parameter (repeatable), e.g. slurm_partition=gpu, timeout_min=600, "
                     "mem_gb=16, slurm_account=lab; cluster=local runs the jobs as local processes")
    _runtime_options(run)
    run.set_defaults(handler=cmd_run)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a checkpoint unlearned elsewhere against a cell's oracle",
        description="Score a model unlearned outside this harness on one cell (benchmark, forget set, seed): "
        "the same metrics and gaps to the oracle as the leaderboard. The cell's original model and oracle are "
        "loaded from the cache or trained. Start from `unlearn export`'s original.safetensors.",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cell_options(evaluate)
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="the unlearned model (.safetensors)")
    evaluate.add_argument("--allow-pickle", action="store_true",
                          help="accept a PyTorch pickle (.pt/.pth/.bin), loaded with torch.load(weights_only=True)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    evaluate.add_argument("--output", type=Path, metavar="PATH",
                          help="also write that JSON object to PATH (atomically)")
    _runtime_options(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    export = sub.add_parser(
        "export",
        help="write a cell's original model and forget set, to unlearn it outside the harness",
        description="Write OUT/original.safetensors (the cell's original model, trained or taken from the cache) "
        "and OUT/forget-set.json (the forget set's training-split indices and their sha256).",
    )
    _cell_options(export)
    export.add_argument("--out", type=Path, required=True, help="output directory")
    _runtime_options(export)
    export.set_defaults(handler=cmd_export)

    mask = sub.add_parser(
        "mask",
        help="compute, save and inspect SalUn's saliency mask for a cell",
        description="Compute SalUn's saliency mask (top RATIO of |gradient of -CE on the forget set| over all "
        "weights of the cell's original model) and save it as safetensors, or --show a saved mask. Print the "
        "kept fraction per tensor. Reuse a mask with `unlearn run --hparam salun.mask_path=FILE`.",
    )
    mask.add_argument("--show", type=Path, metavar="FILE", help="inspect a saved mask instead of computing one")
    mask.add_argument("--benchmark", default="digits", help="benchmark name or spec file (default: digits)")
    mask.add_argument("--forget", help="one forget spec, e.g. class:3 (required unless --show)")
    mask.add_argument("--seed", type=int, default=0, help="the cell's seed (default: 0)")
    mask.add_argument("--ratio", type=float, help="fraction of weights kept (default: the benchmark's salun ratio)")
    mask.add_argument("--out", type=Path, help="output file (required unless --show)")
    _runtime_options(mask)
    mask.set_defaults(handler=cmd_mask)

    tune = sub.add_parser(
        "tune",
        help="choose a method's learning rate and key knobs by the validation gap to the oracle",
        description=textwrap.fill(
            "Search a small grid of one method's hyperparameters (its learning rate and one or two key knobs; "
            "`unlearn methods NAME` lists them) on the given forget sets and seeds, and write the values with the "
            "smallest mean gap to the oracle into the benchmark spec's `hparams:` section (a plugin method's into an "
            "overlay file; see below), where every later run and every forget set picks them up. The gap uses the benchmark's gap metrics with each test-set metric "
            "replaced by its validation twin (TA -> VA, MIA-Efficacy -> MIA-Efficacy-val, which uses validation "
            "images as the attack's non-members): the test set is never used to choose.", 88),
        epilog=TUNE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("--method", required=True, help="the method to tune")
    tune.add_argument("--benchmark", default="digits", help="benchmark name or spec file (default: digits)")
    tune.add_argument("--forget", type=_csv, default=["random:0.1"],
                      help="comma-separated forget specs to tune on (default: random:0.1); the mean over them counts")
    tune.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default: the benchmark's grid seeds)")
    tune.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                      help="search these values for NAME instead of the method's own grid (repeatable)")
    where = tune.add_mutually_exclusive_group()
    where.add_argument("--no-write", action="store_true", help="report the choice, write no spec or overlay")
    where.add_argument("--write-spec", action="store_true",
                       help="write the choice into the spec file even for a method that is not built in")
    where.add_argument("--hparams-file", type=Path, metavar="PATH",
                       help="the overlay file to read tuned values from and write the choice to (default: "
                       "WORKDIR/hparams/BENCHMARK.yaml, read when it exists, written for a method that is not built in)")
    tune.add_argument("--results-dir", type=Path, help="where trial records go (default: WORKDIR/data/tune)")
    _runtime_options(tune)
    tune.set_defaults(handler=cmd_tune)

    submit = sub.add_parser(
        "submit",
        help="validate a method's records and copy them into leaderboard/results",
        description="Check the records of the given methods (default: every method with records) and copy them "
        "into the leaderboard with a provenance block, replacing the methods' earlier leaderboard records. "
        "Refused, with what is missing, unless every method has exactly one finished record per cell of the "
        "benchmark's grid (its forget sets x seeds), made under the current spec with one hyperparameter "
        "configuration and recorded versions, and scored against the same oracle as the leaderboard's "
        "retrain records.",
    )
    submit.add_argument("--benchmark", default="digits", help="benchmark name or spec file (default: digits)")
    submit.add_argument("--methods", type=_csv, help="comma-separated methods to submit (default: all found)")
    submit.add_argument("--results-dir", type=Path, default=Path("data/runs"),
                        help="where `unlearn run` wrote the records (default: ./data/runs)")
    submit.add_argument("--leaderboard", type=Path, default=Path("leaderboard"),
                        help="leaderboard directory (default: ./leaderboard)")
    submit.add_argument("--submitter", help="name recorded in the provenance block (default: git user.name)")
    submit.add_argument("--allow-failed", action="store_true", help="submit failed cells as results")
    submit.add_argument("--dry-run", action="store_true", help="run every check, write nothing")
    submit.add_argument("--strict", action="store_true",
                        help="refuse records made with other package versions than the leaderboard's records of the "
                        "benchmark (default: warn and name them)")
    submit.set_defaults(handler=cmd_submit)

    board = sub.add_parser(
        "leaderboard",
        help="regenerate leaderboard/README.md, leaderboard.csv, index.html and plots from the records",
        description="Regenerate the leaderboard from the result records under DIR/results. Invalid records, "
        "duplicate cells, conflicting configurations and records scored against another oracle are reported "
        "and skipped. The same records always give the same files.",
    )
    board.add_argument("--dir", type=Path, default=Path("leaderboard"), help="leaderboard directory (default: ./leaderboard)")
    board.add_argument("--results", type=Path, help="records to read (default: DIR/results)")
    board.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if the files are not what the records give (for CI)")
    board.set_defaults(handler=cmd_leaderboard)

    repro = sub.add_parser(
        "reproduce", help="rerun committed leaderboard cells from scratch and compare every number with the records",
        description="Rerun K committed cells, drawn at random (--pick-seed) or named (--cell), each cold in a fresh "
        "temporary workdir: forget set, original model, oracle, method and metrics. First print how this environment "
        "differs from the records' (versions, cpu threads, device, commit); then one line per cell: reproduced, "
        "differs (with the numbers that moved) or spec changed (the spec now gives the cell another config hash, so "
        "it is not rerun). Every metric, gap, oracle and original metric is compared; run times and timing metrics "
        "(Samples/s) are not.", epilog=REPRODUCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    repro.add_argument("--benchmark", action="append", type=_csv, metavar="B[,B...]",
                       help="pick from these benchmarks' records only (names or spec files; repeatable; default: all)")
    repro.add_argument("--cells", type=int, default=3, metavar="K", help="how many cells to draw (default: 3)")
    repro.add_argument("--pick-seed", type=int, default=0, metavar="S", help="seed of the draw (default: 0)")
    repro.add_argument("--cell", type=Path, action="append", default=[], metavar="PATH",
                       help="rerun this record instead of drawing (repeatable; a path, or a path under --results-dir)")
    repro.add_argument("--tolerance", type=float, default=0.0, metavar="T",
                       help="absolute tolerance in metric points (default: 0, exact equality)")
    repro.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"),
                       help="the committed records (default: ./leaderboard/results); only read")
    repro.add_argument("--device", help="device to rerun on (default: the device each record names)")
    repro.add_argument("--threads", type=_threads, metavar="N", help="CPU threads (default: each record's)")
    repro.add_argument("--workdir", type=Path, help="where the cold reruns happen (default: a temporary directory)")
    repro.add_argument("--data-root", type=Path, help="dataset files for torchvision datasets (default: ./data/datasets)")
    repro.add_argument("--download", action="store_true", help="allow downloading a missing torchvision dataset")
    repro.add_argument("--verbose", action="store_true", help="list every differing number (default: the first 8)")
    _progress_options(repro)
    repro.set_defaults(handler=cmd_reproduce)

    forget_set = sub.add_parser(
        "forget-set", help="build or inspect forget-set manifests (worst-case, corrective, random, class)",
        description="Forget sets are stored as manifests under WORKDIR/data/forget-sets/ (indices, sha256, "
        "provenance, checksum) and reused by every run; a missing one is copied from the manifests shipped with unlearn "
        "if they hold it, else built (by `unlearn run --forget SPEC` too).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=FORGET_FORMS)
    forget_sub = forget_set.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
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
    build.add_argument("--benchmark", default="digits", help="benchmark name or spec file (default: digits)")
    build.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated seeds (default: 0)")
    _runtime_options(build)
    build.set_defaults(handler=cmd_forget_set_build)
    show = forget_sub.add_parser("show", help="verify a manifest file and print what it holds",
                                 description="Check a manifest's checksum and print its fields and provenance.")
    show.add_argument("path", type=Path)
    show.set_defaults(handler=cmd_forget_set_show)

    methods = sub.add_parser(
        "methods", help="list unlearning methods, or show one method's hyperparameters",
        description="Without NAME: one line per method (name; the models it unlearns: cls = classifiers, gen = "
        "class-conditional diffusion models; data-access track; summary). With NAME: its "
        "description, hyperparameters (reference defaults, and the benchmark's tuned values) and tuning grid.")
    methods.add_argument("name", nargs="?", help="a method to describe")
    methods.add_argument("--benchmark", default="digits", help="whose tuned values to show (default: digits)")
    methods.set_defaults(handler=cmd_methods)
    benchmarks = sub.add_parser("benchmarks", help="list benchmarks, one per line: name, scale (CPU or GPU), description")
    benchmarks.set_defaults(handler=cmd_benchmarks)
    metrics = sub.add_parser(
        "metrics", help="list metrics: what each needs and the keys it records",
        description="One block per registered metric: its summary, the splits and dependencies it needs "
        "(oracle, original, oracle-bank, method-bank, shadows) and the keys it records. A benchmark spec turns "
        "metrics on under `metrics:`; docs/metrics.md defines them.")
    metrics.set_defaults(handler=cmd_metrics)
    return parser


def _hparam_overrides(items: Sequence[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    """--hparam values as scalars (numbers, booleans, null, strings): no YAML collections, aliases or tags."""
    from unlearn.yaml_input import parse_scalar

    out: dict[str, dict[str, Any]] = {}
    for method, name, value in items:
        out.setdefault(method, {})[name] = parse_scalar(value, f"--hparam {method}.{name}")
    return out


def _overlaid(args: argparse.Namespace, spec: Any) -> Any:
    """The spec with the tuned-value overlay (--hparams-file, or the workdir's) merged in; says which file it used."""
    from unlearn.overlay import with_overlay

    spec, path = with_overlay(spec, args.workdir, args.hparams_file)
    if path is not None:
        print(f"unlearn: tuned hyperparameters from {path} (merged over the spec's)", file=sys.stderr)
    return spec


def _runtime(args: argparse.Namespace, spec: Any) -> tuple[Any, Any, bool]:
    """Resolve the device, set torch's threads, and check the workspace: (device, workspace, progress)."""
    from unlearn.device import configure_threads, resolve_device
    from unlearn.harness import Workspace
    from unlearn.shipped import FORGET_SETS, shipped_dir

    device = resolve_device(args.device)
    configure_threads(device, args.threads or spec.cpu_threads)
    workspace = Workspace.at(
        args.workdir,
        results_dir=getattr(args, "results_dir", None),
        cache_dir=args.cache_dir,
        data_root=args.data_root,
        download=args.download,
        committed_forget_dir=shipped_dir(FORGET_SETS),
    )
    workspace.check_writable()
    return device, workspace, args.progress


def cmd_run(args: argparse.Namespace) -> int:
    from unlearn.executors import make_executor
    from unlearn.harness import load_task, make_runner, plan_grid
    from unlearn.leaderboard import AVG_GAP, ROBUST_GAP, RUN_TIME, format_text, summarize
    from unlearn.leaderboard.tables import forget_set_keys
    from unlearn.spec import load_benchmark

    executor = make_executor(args.executor, args.jobs, args.address, dict(args.slurm))
    spec = _overlaid(args, load_benchmark(args.benchmark))
    plan = plan_grid(spec, args.methods, args.forget, args.seeds, _hparam_overrides(args.hparam))
    device, workspace, progress = _runtime(args, spec)
    task = load_task(spec, workspace, device)
    task.check(plan)

    log = None if progress else (lambda msg: print(msg, file=sys.stderr, flush=True))
    print(f"unlearn: {spec.name}: {plan.size} cells on {device}, {executor.describe()}; records in "
          f"{workspace.results_dir}", file=sys.stderr)
    runner = make_runner(plan, task, workspace, progress=progress, log=log, retry_failed=args.retry_failed)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the table alone (Ray prints a worker's death there)
        result = runner.run(executor)

    own = dict.fromkeys(k for forget in plan.forgets for k in forget_set_keys(forget.text))  # corrective: ASR
    print(format_text(summarize(result.records, [*spec.gap_metrics, AVG_GAP, ROBUST_GAP, *own, RUN_TIME])))
    failed = [r for r in result.records if r.status == "failed"]
    if result.ran and executor.name != "serial":
        print(f"unlearn: {executor.name}: {executor.stats.summary()}", file=sys.stderr)
    print(f"unlearn: {result.ran} cells run, {result.reused} reused, {len(failed)} failed", file=sys.stderr)
    for r in failed:
        print(f"unlearn: failed: {r.method} · {r.forget.spec} · seed {r.seed}: {r.error}", file=sys.stderr)
    return 0


def _forget_text(args: argparse.Namespace) -> str:
    """The forget spec `forget-set build` names: SPEC, or KIND:SIZE from --fraction/--classes, plus options."""
    text = args.spec
    size = args.fraction if args.fraction is not None else args.classes
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
    from unlearn.harness import load_task, make_runner, plan_grid
    from unlearn.results import ORACLE
    from unlearn.spec import load_benchmark

    spec = load_benchmark(args.benchmark)
    forget = ForgetSpec.parse(_forget_text(args))
    if any(s < 0 for s in args.seeds):
        raise UserError("seeds must be non-negative integers")
    device, workspace, progress = _runtime(args, spec)
    task = load_task(spec, workspace, device)
    forget.builder.check(forget.params, task.dataset)
    runner = make_runner(plan_grid(spec, [ORACLE], [forget.text], args.seeds), task, workspace, progress=progress)
    for seed in args.seeds:
        manifest = runner.manifest(forget, seed)
        benchmark = spec.name if forget.builder.needs_model else None
        print(manifest_path(workspace.forget_dir, task.dataset.name, forget, seed, benchmark))
        _describe_manifest(manifest, runner.original(seed).seconds if forget.builder.needs_model else None)
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
    for key, value in provenance.items():
        print(f"  {key}: {value}")
    if trajectory:
        print(f"  {'iteration':>9} {'objective':>12} {'set loss':>10} {'changed':>8}")
        for row in trajectory:
            print(f"  {row['iteration']:>9} {row['objective']:>12.5g} {row['set_loss']:>10.4g} {row['changed']:>8}")
    if training_seconds and "seconds" in provenance:
        print(f"  cost: {provenance['seconds'] / training_seconds:.2f} x training the original model "
              f"({provenance['seconds']:.1f} s vs {training_seconds:.1f} s; a cached set costs nothing)")


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
        device, workspace, progress = _runtime(args, spec)
        mask = export_mask(spec, workspace, device, args.forget, args.seed, args.out, ratio=args.ratio,
                           progress=progress)
        print(f"unlearn: wrote {args.out}", file=sys.stderr)
    print(f"ratio {mask.ratio:g}: {mask.kept()} of {mask.total()} weights kept ({100 * mask.kept_fraction():.1f} %)")
    for key, value in sorted(mask.metadata.items()):
        print(f"  {key}: {value}")
    print(f"{'tensor':<28}{'shape':>18}{'kept':>10}{'of':>10}{'%':>8}")
    for entry in mask.summary():
        shape = "x".join(str(d) for d in entry.shape)
        print(f"{entry.name:<28}{shape:>18}{entry.kept:>10}{entry.total:>10}{100 * entry.fraction:>8.1f}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:

    from unlearn.progress import progress_bar

    from unlearn import tune as tuning
    from unlearn.harness import load_task, make_runner, plan_grid
    from unlearn.methods import METHODS
    from unlearn.overlay import overlay_path
    from unlearn.spec import find_spec, read_spec

    spec_path = find_spec(args.benchmark)
    given_file = args.hparams_file
    if given_file is not None and not given_file.is_file():  # the overlay to create: nothing to read from it yet
        spec = read_spec(spec_path)
    else:
        spec = _overlaid(args, read_spec(spec_path))
    trials = tuning.search_grid(args.method, tuning.parse_grid(args.grid))
    seeds = args.seeds if args.seeds is not None else spec.grid.seeds
    trial_spec = tuning.tuning_spec(spec)
    plans = [plan_grid(trial_spec, [args.method], args.forget, seeds, {args.method: values}) for values in trials]
    if args.results_dir is None:
        args.results_dir = args.workdir / "data/tune"
    device, workspace, progress = _runtime(args, spec)
    task = load_task(spec, workspace, device)
    for plan in plans:
        task.check(plan)
    print(f"unlearn: tuning {args.method} on {spec.name}: {len(trials)} trials x {plans[0].size} cells on {device}",
          file=sys.stderr)
    bar = progress_bar(total=len(trials), desc=f"tune {args.method}", unit="trial", disable=not progress)

    def run_trial(values: dict[str, Any]) -> list[Any]:
        records = make_runner(plans[trials.index(values)], task, workspace).run().records
        bar.update(1)
        return records

    def show(trial: Any) -> None:
        gap = "failed" if trial.gap is None else f"{trial.gap:.2f}"
        print(f"unlearn: {tuning.trial_label(trial.values)}: validation gap {gap}", file=sys.stderr)

    result = tuning.tune(spec, args.method, args.forget, seeds, trials, run_trial, on_trial=show)
    bar.close()
    report = tuning.write_report(result, workspace.results_dir)
    forgets = list(result.best.gap_by_forget)
    width = {f: max(14, len(f) + 2) for f in forgets}  # long forget specs (corrective, worst-case) stay apart
    print(f"{'trial':<40}" + "".join(f"{f:>{width[f]}}" for f in forgets) + f"{'mean':>10}")
    for trial in sorted(result.trials, key=lambda t: math.inf if t.gap is None else t.gap):
        mark = " *" if trial is result.best else ""
        cells = "".join(f"{trial.gap_by_forget[f]:>{width[f]}.2f}" if f in trial.gap_by_forget
                        else f"{'failed':>{width[f]}}" for f in forgets)
        mean = "failed" if trial.gap is None else f"{trial.gap:.2f}"
        print(f"{tuning.trial_label(trial.values):<40}{cells}{mean:>10}{mark}")
    print(f"unlearn: chose {tuning.trial_label(result.best.values)} (gap metrics {', '.join(result.metrics)}); "
          f"trials in {report}", file=sys.stderr)
    if args.no_write:
        print(f"unlearn: --no-write: {spec_path} unchanged", file=sys.stderr)
    elif args.write_spec or (given_file is None and METHODS.origin(args.method) == "builtin"):
        tuning.write_to_spec(spec_path, result)
        print(f"unlearn: wrote hparams.{args.method} to {spec_path}", file=sys.stderr)
    else:
        overlay = given_file or overlay_path(args.workdir, spec.name)
        tuning.write_to_overlay(overlay, spec, result)
        print(f"unlearn: wrote hparams.{args.method} to {overlay}, merged over {spec_path} by `unlearn run` with this "
              "workdir or --hparams-file (the spec is unchanged; --write-spec writes there)", file=sys.stderr)
    return 0


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
    device, workspace, progress = _runtime(args, spec)
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
    rows = [("checkpoint", {**score.metrics, AVG_GAP: score.gaps[AVG_GAP]}),
            ("retrain (oracle)", {**score.oracle_metrics, AVG_GAP: 0.0}),
            ("original", score.original_metrics)]
    print(f"{score.benchmark} · forget {score.forget} · seed {score.seed} · {score.checkpoint}")
    print(f"{'':<18}" + "".join(f"{c:>14}" for c in columns))
    for label, values in rows:
        cells = "".join(f"{values[c]:>14.2f}" if c in values else f"{'—':>14}" for c in columns)
        print(f"{label:<18}{cells}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from unlearn.evaluate import export_original
    from unlearn.spec import load_benchmark

    spec = load_benchmark(args.benchmark)
    device, workspace, progress = _runtime(args, spec)
    for path in export_original(spec, workspace, device, args.forget, args.seed, args.out, progress=progress):
        print(path)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from unlearn.atomic import ensure_writable
    from unlearn.spec import load_benchmark
    from unlearn.submit import submit

    spec = load_benchmark(args.benchmark)
    if not args.dry_run:
        ensure_writable(args.leaderboard / "results", "leaderboard results directory")
    report = submit(spec, args.results_dir, args.leaderboard / "results", args.methods,
                    submitted_by=args.submitter, allow_failed=args.allow_failed, dry_run=args.dry_run,
                    strict=args.strict)
    for note in report.notes:
        print(f"unlearn: note: {note}", file=sys.stderr)
    for warning in report.warnings:
        print(f"unlearn: warning: {warning}", file=sys.stderr)
    verb = "would copy" if args.dry_run else "copied"
    print(
        f"unlearn: {verb} {len(report.written)} records of {', '.join(report.methods)} to {args.leaderboard}/results"
        f" ({len(report.removed)} earlier records {'would be ' if args.dry_run else ''}replaced)",
        file=sys.stderr,
    )
    if not args.dry_run:
        print("unlearn: now regenerate the tables with `unlearn leaderboard`", file=sys.stderr)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from unlearn.leaderboard.build import regenerate, stale_outputs

    results = args.results if args.results is not None else args.dir / "results"
    if not results.is_dir():
        raise UserError(f"no records directory {results} (run from the repository root, or pass --dir / --results)")
    if args.check:
        stale = stale_outputs(args.dir, args.results)
        if stale:
            print(f"unlearn: {args.dir} is out of date: {', '.join(stale)}; run `unlearn leaderboard`", file=sys.stderr)
            return 1
        print(f"unlearn: {args.dir} is up to date", file=sys.stderr)
        return 0
    from unlearn.atomic import ensure_writable

    ensure_writable(args.dir, "leaderboard directory")
    build = regenerate(args.dir, args.results)
    for skipped in build.collection.skipped:
        print(f"unlearn: skipped {results.parent / skipped.path}: {skipped.reason}", file=sys.stderr)
    print(
        f"unlearn: wrote {len(build.outputs)} files to {args.dir} from {len(build.collection.records)} records"
        f" ({len(build.collection.skipped)} skipped)",
        file=sys.stderr,
    )
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from unlearn.reproduce import command

    return command(args)


def cmd_methods(args: argparse.Namespace) -> int:
    import dataclasses
    import inspect

    from unlearn.methods import METHODS, resolve_method
    from unlearn.registry import summary

    if args.name:
        from unlearn.spec import load_benchmark

        cls = resolve_method(args.name)
        tuned = load_benchmark(args.benchmark).hparams.get(args.name, {})
        print(f"{args.name} ({cls().track.value} track, {METHODS.origin(args.name)})\n")
        print(inspect.cleandoc(cls.__doc__ or summary(cls)) + "\n")
        print(f"{'hyperparameter':<18}{'default':>12}{args.benchmark + ' value':>16}   tuning grid")
        for f in dataclasses.fields(cls.HParams):
            default = getattr(cls.HParams(), f.name)
            value = tuned.get(f.name, "")
            grid = ", ".join(str(v) for v in cls.search.get(f.name, ()))
            print(f"{f.name:<18}{default!s:>12}{value!s:>16}   {grid}")
        return 0
    width = max(len(n) for n in METHODS.names()) + 1
    for name in METHODS.names():
        cls = resolve_method(name)
        kinds = "+".join("gen" if k == "generation" else "cls" for k in cls.kinds)
        print(f"{name:<{width}} {kinds:<8} {cls().track.value:<12} {summary(cls)}")
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from unlearn.spec import available_benchmarks, read_spec

    found = available_benchmarks()
    for name in sorted(found):
        spec = read_spec(found[name])
        print(f"{name:<16} {spec.scale.upper():<4} {spec.description}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from unlearn.metrics import DEPENDENCIES, METRICS
    from unlearn.registry import summary

    for name in METRICS.names():
        m = METRICS.get(name)
        deps = [n for n in m.needs if n in DEPENDENCIES]
        splits = [n for n in m.needs if n not in DEPENDENCIES]
        print(f"{name:<18} {summary(m.fn)}")
        print(f"{'':<18} keys: {', '.join(m.produces)}; splits: {', '.join(splits)}"
              + (f"; needs: {', '.join(deps)}" if deps else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `unlearn` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed in one line
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"unlearn: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = None  # type: ignore[assignment]  (no flush error at exit)
        return 0
    except KeyboardInterrupt:
        print("unlearn: interrupted; finished cells are saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
