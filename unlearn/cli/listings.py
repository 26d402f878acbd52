"""What is registered: `unlearn methods`, `unlearn benchmarks` and `unlearn metrics`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from unlearn.cli.options import add_benchmark, print_table

SHORT_KINDS = {"classification": "cls", "generation": "gen", "language": "lm"}
"""How `unlearn methods` abbreviates the kinds a method unlearns; any other kind is listed by its name."""


def add_methods(sub: Any) -> None:
    methods = sub.add_parser(
        "methods", help="list unlearning methods, or show one method's hyperparameters",
        description="Without NAME: one line per method (name; the models it unlearns: cls = classifiers, gen = "
        "class-conditional diffusion models, any other kind by its name; data-access track; summary). With NAME: its "
        "description, hyperparameters (reference defaults, and the benchmark's tuned values) and tuning grid.")
    methods.add_argument("name", nargs="?", help="a method to describe")
    add_benchmark(methods, "whose tuned values to show (default: digits)")
    methods.set_defaults(handler=cmd_methods)


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

        def hparams() -> Iterator[tuple[object, ...]]:
            yield "hyperparameter", "default", args.benchmark + " value", "tuning grid"
            for f in dataclasses.fields(cls.HParams):
                grid = ", ".join(str(v) for v in cls.search.get(f.name, ()))
                yield f.name, getattr(cls.HParams(), f.name), tuned.get(f.name, ""), grid

        print_table(hparams(), [-18, 12, 16, None], sep=("", "", "   "))
        return 0

    def lines() -> Iterator[tuple[str, ...]]:  # one at a time: a broken plugin fails after the lines before it
        for name in METHODS.names():
            cls = resolve_method(name)
            kinds = "+".join(SHORT_KINDS.get(k, k) for k in cls.kinds)
            yield name, kinds, cls().track.value, summary(cls)

    print_table(lines(), [-(max(len(n) for n in METHODS.names()) + 1), -11, -12, None], sep=" ")
    return 0


def add_benchmarks(sub: Any) -> None:
    benchmarks = sub.add_parser("benchmarks", help="list benchmarks, one per line: name, scale (CPU or GPU), description")
    benchmarks.set_defaults(handler=cmd_benchmarks)


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from unlearn.spec import available_benchmarks, read_spec

    found = available_benchmarks()
    specs = ((name, read_spec(found[name])) for name in sorted(found))
    print_table(((name, spec.scale.upper(), spec.description) for name, spec in specs), [-16, -4, None], sep=" ")
    return 0


def add_metrics(sub: Any) -> None:
    metrics = sub.add_parser(
        "metrics", help="list metrics: what each needs and the keys it records",
        description="One block per registered metric: its summary, the splits and dependencies it needs "
        "(oracle, original, oracle-bank, method-bank, shadows) and the keys it records. A benchmark spec turns "
        "metrics on under `metrics:`; docs/metrics.md defines them.")
    metrics.set_defaults(handler=cmd_metrics)


def cmd_metrics(args: argparse.Namespace) -> int:
    from unlearn.metrics import DEPENDENCIES, METRICS
    from unlearn.registry import summary

    def blocks() -> Iterator[tuple[str, str]]:
        for name in METRICS.names():
            m = METRICS.get(name)
            deps = [n for n in m.needs if n in DEPENDENCIES]
            splits = [n for n in m.needs if n not in DEPENDENCIES]
            yield name, summary(m.fn)
            yield "", (f"keys: {', '.join(m.produces)}; splits: {', '.join(splits)}"
                       + (f"; needs: {', '.join(deps)}" if deps else ""))

    print_table(blocks(), [-18, None], sep=" ")
    return 0


PARSERS = (add_methods, add_benchmarks, add_metrics)
