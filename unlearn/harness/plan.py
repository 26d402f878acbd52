"""A grid's plan: which methods (with their hyperparameters), forget sets and seeds, validated before anything loads.

This module imports neither torch nor any method: `plan_grid` resolves the names it is given, and only those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearn.errors import UserError
from unlearn.names import brief

if TYPE_CHECKING:
    from unlearn.forget import ForgetSpec
    from unlearn.methods import Method
    from unlearn.spec import BenchmarkSpec


@dataclass(frozen=True)
class MethodChoice:
    """A method of the grid: its name, class, validated hyperparameters and where it came from."""

    name: str
    cls: type[Method]
    hparams: Any
    origin: str

    def instance(self) -> Method:
        return self.cls(self.hparams)


@dataclass(frozen=True)
class GridPlan:
    """A validated grid: nothing in it can fail for a reason the user could have fixed."""

    spec: BenchmarkSpec
    methods: tuple[MethodChoice, ...]
    forgets: tuple[ForgetSpec, ...]
    seeds: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.methods) * len(self.forgets) * len(self.seeds)


def choose_method(spec: BenchmarkSpec, name: str, overrides: Mapping[str, Any] | None = None) -> MethodChoice:
    """Resolve a method and its hyperparameters: reference defaults < benchmark's tuned values < overrides."""
    from unlearn.methods import METHODS, make_hparams, resolve_method

    cls = resolve_method(name)
    values = {**spec.hparams.get(name, {}), **(overrides or {})}
    return MethodChoice(name, cls, make_hparams(cls, name, values), METHODS.origin(name))


def provides(spec: BenchmarkSpec, runs_methods: bool = True) -> Callable[[str], bool]:
    """What the harness can give metrics for `spec`: what its kind provides (`Kind.provides`)."""
    from unlearn.harness.kinds import kind_class

    return kind_class(spec.kind).provides(spec, runs_methods).__contains__


def check_forget(spec: BenchmarkSpec, forget: ForgetSpec) -> None:
    """Raise UserError unless the benchmark's kind accepts the forget set and its protocol exists, and the harness
    provides what the cell's metrics need."""
    from unlearn.harness.kinds import kind_class
    from unlearn.harness.protocols import PROTOCOLS
    from unlearn.metrics import check_dependencies

    kind_class(spec.kind).check_forget(spec, forget)
    PROTOCOLS.get(forget.builder.protocol)
    builder, available = forget.builder, provides(spec)
    check_dependencies(list(dict.fromkeys([*spec.metrics, *builder.extra_metrics])),
                       lambda name: available(name) or name in builder.provides)


def check_spec(spec: BenchmarkSpec) -> None:
    """Raise UserError for tuned values of a method that does not exist or does not take them, and for gap or report
    metrics that none of the spec's metrics produce."""
    from unlearn.metrics import METRICS

    for name in spec.hparams:
        try:
            choose_method(spec, name)
        except UserError as exc:
            raise UserError(f"benchmark {spec.name!r}: hparams of {brief(name)}: {exc}; fix or remove them") from None
    produced = {key for name in spec.metrics for key in METRICS.get(name).produces}
    for what, keys in (("gap", spec.gap_metrics), ("report", spec.report_metrics)):
        missing = [key for key in keys if key not in produced]
        if missing:
            raise UserError(f"benchmark {spec.name!r}: {what} metrics {missing} are produced by none of {spec.metrics}")


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """The seeds without repeats; UserError when there are none or one is negative."""
    seed_list = tuple(dict.fromkeys(seeds))
    if not seed_list:
        raise UserError("no seeds given")
    if any(s < 0 for s in seed_list):
        raise UserError("seeds must be non-negative integers")
    return seed_list


def plan_cell(spec: BenchmarkSpec, forget: str, seed: int) -> ForgetSpec:
    """Validate one cell's benchmark, forget set and seed as `plan_grid` does (for scoring a model unlearned
    elsewhere, or exporting what such a user starts from); its parsed forget set."""
    from unlearn.forget import ForgetSpec

    check_spec(spec)
    parsed = ForgetSpec.parse(forget)
    check_forget(spec, parsed)
    check_seeds([seed])
    return parsed


def plan_grid(
    spec: BenchmarkSpec,
    methods: Sequence[str] | None = None,
    forgets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
) -> GridPlan:
    """Validate the grid's names and values against the registries (no data is loaded here)."""
    from unlearn.forget import ForgetSpec
    from unlearn.methods import METHODS

    method_names = list(dict.fromkeys(methods or spec.grid.methods))
    hparams = hparams or {}
    check_spec(spec)
    for name in hparams:
        if name not in method_names:
            raise UserError(f"--hparam names method {name!r}, which is not in the grid ({', '.join(method_names)})")
    choices = tuple(choose_method(spec, name, hparams.get(name)) for name in method_names)
    for choice in choices:
        if spec.kind not in choice.cls.kinds:
            fitting = [n for n in METHODS.names() if spec.kind in getattr(_loadable(n), "kinds", ())]
            raise UserError(
                f"method {choice.name!r} unlearns {' and '.join(choice.cls.kinds)} models, benchmark {spec.name!r} is a "
                f"{spec.kind} benchmark; its methods: {', '.join(fitting)}"
            )
    parsed = (ForgetSpec.parse(text) for text in dict.fromkeys(forgets or spec.grid.forget))
    forget_specs = tuple({f.text: f for f in parsed}.values())  # random:0.1 and random:0.10 are one set
    for forget in forget_specs:
        check_forget(spec, forget)
    seed_list = check_seeds(seeds if seeds is not None else spec.grid.seeds)
    return GridPlan(spec, choices, forget_specs, seed_list)


def _loadable(name: str) -> Any:
    """The registered method `name`, or None when it is a plugin that fails to load (for listings)."""
    from unlearn.methods import METHODS

    try:
        return METHODS.get(name)
    except UserError:
        return None
