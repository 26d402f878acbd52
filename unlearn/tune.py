"""`unlearn tune`: choose a method's learning rate (and one or two key knobs) by the gap to the oracle on
validation data, and write the choice into the benchmark's spec (a built-in method) or into an overlay file the
user owns (a plugin's method; see unlearn.overlay).

The field tunes unlearning methods by their Avg. Gap on the test set, which leaks the
test set into the table. Here each trial is an ordinary grid run (records under
data/tune/, resumable), but it is scored by the tuning gap: the benchmark's gap
metrics with every test-set metric replaced by its validation twin (TA -> VA), so
the choice never sees a test label. The trial with the smallest mean tuning gap over
the forget sets and seeds wins; a trial with any failed (e.g. diverged) cell is out.
Ties go to the earlier trial in grid order.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unlearn.atomic import atomic_write_text
from unlearn.errors import UserError
from unlearn.methods import make_hparams, resolve_method
from unlearn.metrics import METRICS, gaps
from unlearn.overlay import new_overlay, parse_overlay
from unlearn.provenance import git_commit
from unlearn.results import slug
from unlearn.spec import BenchmarkSpec, parse_spec
from unlearn.yaml_edit import set_entry

VALIDATION_TWIN = {"TA": ("VA", "accuracy"), "MIA-Efficacy": ("MIA-Efficacy-val", "mia-efficacy-val")}
"""Gap metrics that read the test set -> (the validation twin that replaces each when tuning, its metric)."""
TEST_ONLY = {"TA-forgotten"}
"""Test-set metrics without a validation twin: a benchmark tuning on them is refused."""


def tuning_metrics(spec: BenchmarkSpec) -> list[str]:
    """The benchmark's gap metrics with test metrics replaced by their validation twins."""
    leaked = [m for m in spec.gap_metrics if m in TEST_ONLY]
    if leaked:
        raise UserError(f"benchmark {spec.name!r}: gap metrics {leaked} exist only on the test set; cannot tune on them")
    return [VALIDATION_TWIN[m][0] if m in VALIDATION_TWIN else m for m in spec.gap_metrics]


def tuning_spec(spec: BenchmarkSpec) -> BenchmarkSpec:
    """The spec the trials run under: the metrics behind its gap metrics plus their validation twins.

    Metrics that feed no gap (probes, relearning, other attacks) are left out: choosing
    hyperparameters never reads them, and they would only slow every trial down. (The
    trials' records therefore have their own config hashes and never mix with a grid's.)
    """
    twins = [VALIDATION_TWIN[m][1] for m in spec.gap_metrics if m in VALIDATION_TWIN]
    feeding = [m for m in spec.metrics if set(METRICS.get(m).produces) & set(spec.gap_metrics)]
    return spec.model_copy(update={"metrics": list(dict.fromkeys([*feeding, *twins])), "report_metrics": []})


def search_grid(method: str, overrides: Mapping[str, Sequence[Any]] | None = None) -> list[dict[str, Any]]:
    """The trials: the product of the method's `search` values, with `overrides` replacing or adding knobs.

    Every trial is validated as hyperparameters of the method (names, types, ranges).
    """
    cls = resolve_method(method)
    space = {**cls.search, **(overrides or {})}
    if not space:
        raise UserError(f"method {method!r} declares nothing to tune; pass --grid NAME=V1,V2")
    for name, values in space.items():
        if not values:
            raise UserError(f"--grid {name}= has no values")
    trials = [dict(zip(space, combo, strict=True)) for combo in itertools.product(*space.values())]
    for values in trials:
        make_hparams(cls, method, values)
    return trials


@dataclass
class Trial:
    """One point of the search grid and how it scored."""

    values: dict[str, Any]
    gap: float | None
    """Mean tuning gap over every cell, or None when a cell failed."""
    gap_by_forget: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


@dataclass
class TuneResult:
    """A finished search: every trial and the chosen one."""

    benchmark: str
    method: str
    forgets: list[str]
    seeds: list[int]
    metrics: list[str]
    trials: list[Trial]
    best: Trial

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "method": self.method,
            "forgets": self.forgets,
            "seeds": self.seeds,
            "tuning_metrics": self.metrics,
            "trials": [asdict(t) for t in self.trials],
            "chosen": self.best.values,
            "git_commit": git_commit(),
        }


def score_trial(values: dict[str, Any], records: Sequence[Any], metrics: Sequence[str]) -> Trial:
    """The tuning gap of one trial from its records (validation metrics only)."""
    failed = [f"{r.forget.spec} seed {r.seed}: {r.error}" for r in records if r.status != "ok"]
    if failed:
        return Trial(values, None, {}, failed)
    by_forget: dict[str, list[float]] = {}
    for r in records:
        by_forget.setdefault(r.forget.spec, []).append(gaps(r.metrics, r.oracle_metrics, metrics)["Avg. Gap"])
    means = {forget: sum(v) / len(v) for forget, v in by_forget.items()}
    return Trial(values, sum(means.values()) / len(means), means, [])


def tune(
    spec: BenchmarkSpec,
    method: str,
    forgets: Sequence[str],
    seeds: Sequence[int],
    trials: Sequence[dict[str, Any]],
    run_trial: Callable[[dict[str, Any]], Sequence[Any]],
    on_trial: Callable[[Trial], None] | None = None,
) -> TuneResult:
    """Run every trial with `run_trial(values) -> records` and choose the smallest mean tuning gap."""
    metrics = tuning_metrics(spec)
    scored: list[Trial] = []
    for values in trials:
        trial = score_trial(values, run_trial(values), metrics)
        scored.append(trial)
        if on_trial is not None:
            on_trial(trial)
    finite = [t for t in scored if t.gap is not None and math.isfinite(t.gap)]
    if not finite:
        raise UserError(f"every trial of {method!r} failed (first: {scored[0].failed[0]}); widen the grid")
    best = min(finite, key=lambda t: t.gap)  # min keeps the first of equal gaps: grid order breaks ties
    return TuneResult(spec.name, method, list(forgets), list(seeds), metrics, scored, best)


def write_report(result: TuneResult, results_dir: Path) -> Path:
    """Save every trial and the choice as JSON under `results_dir/<benchmark>/tuning/`."""
    path = results_dir / slug(result.benchmark) / "tuning" / f"{slug(result.method)}.json"
    atomic_write_text(path, json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
    return path


def tuned_comment(result: TuneResult) -> str:
    """The comment written next to the chosen values: how and where they were chosen."""
    return (f"tuned: validation gap {result.best.gap:.2f} on {','.join(result.forgets)}, "
            f"seeds {','.join(str(s) for s in result.seeds)}")


def write_to_spec(spec_path: Path, result: TuneResult) -> None:
    """Write the chosen values into the spec's `hparams:` entry of the method; every other byte stays as it was.

    Other hyperparameters already set for the method are kept. The file is rewritten
    atomically and must still validate as a benchmark spec.
    """
    text = set_entry(spec_path.read_text(encoding="utf-8"), "hparams", result.method, result.best.values,
                     tuned_comment(result), str(spec_path))
    written = parse_spec(text, spec_path).hparams.get(result.method, {})
    if any(written.get(k) != v for k, v in result.best.values.items()):
        raise RuntimeError("the rewritten spec does not hold the chosen values")  # a bug, never user input
    atomic_write_text(spec_path, text)


def write_to_overlay(path: Path, spec: BenchmarkSpec, result: TuneResult) -> None:
    """Write the chosen values into the overlay file `path` (created when missing; see unlearn.overlay), which
    must still validate as an overlay of `spec`."""
    text = path.read_text(encoding="utf-8") if path.is_file() else new_overlay(spec.name)
    text = set_entry(text, "hparams", result.method, result.best.values, tuned_comment(result), str(path))
    written = parse_overlay(text, path, spec).get(result.method, {})
    if any(written.get(k) != v for k, v in result.best.values.items()):
        raise RuntimeError("the rewritten overlay does not hold the chosen values")  # a bug, never user input
    atomic_write_text(path, text, "hyperparameter overlay")


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """--grid NAME=V1,V2 items as {name: [values]} (values parsed as YAML scalars: 0.01, 10, null, true)."""
    from unlearn.yaml_input import parse_scalar

    out: dict[str, list[Any]] = {}
    for item in items:
        name, eq, values = item.partition("=")
        if not eq or not name.strip() or not values.strip():
            raise UserError(f"--grid expects NAME=V1,V2,..., got {item!r}")
        out[name.strip()] = [parse_scalar(v.strip(), f"--grid {name.strip()}") for v in values.split(",")]
    return out


def trial_label(values: Mapping[str, Any]) -> str:
    """A short label for a trial, e.g. 'lr=0.01 epochs=10'."""
    return " ".join(f"{k}={v}" for k, v in values.items())
