"""What the commands share: the parser class, argument types, option groups, --benchmark and the table printer."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from unlearn.errors import UserError

BENCHMARK_HELP = "benchmark name or spec file (default: digits)"

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


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one `--help` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def csv_list(text: str) -> list[str]:
    """A comma-separated list of non-empty items."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}")
    return items


def seed_list(text: str) -> list[int]:
    """Comma-separated integer seeds."""
    try:
        return [int(s) for s in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got {text!r}") from None


def thread_count(text: str) -> int:
    """A number of CPU threads within the spec's bounds."""
    from unlearn.spec import MAX_THREADS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of threads, got {text!r}") from None
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"threads must be between 1 and {MAX_THREADS}, got {value}")
    return value


def slurm_option(text: str) -> tuple[str, Any]:
    """KEY=VALUE for submitit, the value read as one small YAML document."""
    from unlearn.yaml_input import load_document

    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return name.strip(), load_document(value, f"--slurm {name.strip()}", max_nodes=1000) if value else value
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def hparam_assignment(text: str) -> tuple[str, str, str]:
    """METHOD.NAME=VALUE as (method, name, value text)."""
    target, eq, value = text.partition("=")
    method, dot, name = target.rpartition(".")
    if not eq or not dot or not method or not name:
        raise argparse.ArgumentTypeError(f"expected METHOD.NAME=VALUE, got {text!r}")
    return method, name, value


def add_benchmark(parser: argparse.ArgumentParser, help: str = BENCHMARK_HELP, many: bool = False) -> None:
    """--benchmark: one name or spec file (default digits), or with `many` a repeatable comma-separated list."""
    if many:
        parser.add_argument("--benchmark", action="append", type=csv_list, metavar="B[,B...]", help=help)
    else:
        parser.add_argument("--benchmark", default="digits", help=help)


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by commands that load a benchmark's data and models."""
    parser.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--threads", type=thread_count, metavar="N",
                        help="CPU threads for torch and the BLAS pools, 1 to 1024 (default: the benchmark's cpu_threads)")
    parser.add_argument("--workdir", type=Path, default=Path("."), help="root of data/runs, data/cache, data/forget-sets")
    parser.add_argument("--cache-dir", type=Path, help="trained-model cache, shareable (default: WORKDIR/data/cache)")
    parser.add_argument("--data-root", type=Path,
                        help="dataset files for torchvision datasets (default: WORKDIR/data/datasets)")
    parser.add_argument("--download", action="store_true", help="allow downloading a missing torchvision dataset")
    add_progress_options(parser)


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    """--progress / --no-progress: bars on a terminal, a heartbeat line in a log (see unlearn.progress)."""
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", dest="progress", action="store_true", default=True,
                       help="report progress (the default): bars on a terminal; when stderr is a file, one "
                            "timestamped line at least every 30 s of a long phase (training, banks, cells)")
    shown.add_argument("--no-progress", dest="progress", action="store_false", help="report no progress")


def add_cell_options(parser: argparse.ArgumentParser) -> None:
    """--benchmark, --forget and --seed naming one cell."""
    add_benchmark(parser)
    parser.add_argument("--forget", required=True, help="one forget spec, e.g. class:3 or random:0.1")
    parser.add_argument("--seed", type=int, default=0, help="the cell's seed (default: 0)")


def print_table(rows: Iterable[Sequence[object]], widths: Sequence[int | None], sep: str | Sequence[str] = "",
                indent: str = "") -> None:
    """Print rows of cells in fixed-width columns: a width w > 0 right-aligns, -w left-aligns, None pads nothing
    (a last, free-text column); `sep` goes between columns (one string, or one per gap); text wider than its
    column is printed whole. Cells are printed as str(cell): format numbers before. Rows print as they come."""
    gaps = [sep] * (len(widths) - 1) if isinstance(sep, str) else list(sep)
    for row in rows:
        cells = [str(c) if w is None else str(c).rjust(w) if w > 0 else str(c).ljust(-w)
                 for c, w in zip(row, widths, strict=True)]
        print(indent + cells[0] + "".join(gap + cell for gap, cell in zip(gaps, cells[1:], strict=True)))
