"""The Protocol base: how the cells of one (forget set, seed) are prepared, and how a method's outcome is produced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from unlearn.errors import UserError

if TYPE_CHECKING:
    from unlearn.forget import ForgetManifest, ForgetSpec
    from unlearn.harness.cells import Cell, CellGroup, Outcome
    from unlearn.harness.models import Models
    from unlearn.harness.plan import MethodChoice
    from unlearn.harness.scoring import Scoring

ORACLE_TOLERANCE = 3.0
"""How many points an oracle's retain accuracy (`Kind.retain_metric`) may fall below the original model's before its
group is refused: an oracle trained on D_r fits D_r as well as the original fits it (on the committed classification
records the two differ by at most 1.2 points), so a larger shortfall is an undertrained oracle, not noise."""


class Protocol:
    """Runs the cells of forget sets whose builder names this protocol (`ForgetBuilder.protocol`).

    A protocol is bound (`bind`) to a forget set and seed: to the models and scoring of the benchmark's
    kind, or of a kind on other data. `prepare` sets a group up once (original model and oracle loaded or
    trained, both scored); `outcome` runs one cell's method and scores its output.
    """

    one_call: ClassVar[bool] = True
    """True when a cell's output is one model from one unlearning call (so a model unlearned elsewhere can be scored
    against the cell with `unlearn evaluate`)."""
    holds_data: ClassVar[bool] = False
    """True when a bound protocol holds its own copy of the data (a grid keeps one such binding at a time)."""

    def __init__(self, models: Models, scoring: Scoring):
        self.models = models
        self.scoring = scoring
        self.kind = models.kind

    @classmethod
    def bind(cls, models: Models, forget: ForgetSpec, seed: int) -> Protocol:
        """The protocol for the cells of (forget set, seed), on `models` (the benchmark's kind and cache)."""
        from unlearn.harness.scoring import Scoring

        return cls(models, Scoring(models, forget.builder.extra_metrics))

    @classmethod
    def binding_key(cls, forget: ForgetSpec, seed: int) -> tuple[Any, ...]:
        """Cells whose keys are equal share one bound protocol."""
        return (cls, forget.builder.extra_metrics)

    def track_of(self, method: MethodChoice, manifest: ForgetManifest) -> str:
        """The data-access track the method runs under in this cell (recorded with its result)."""
        return method.instance().track.value

    def ready(self, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> CellGroup:
        """The prepared group (`prepare`) once its oracles pass `check_oracles`: what every cell is scored against."""
        group = self.prepare(forget, manifest, seed)
        self.check_oracles(group)
        return group

    def prepare(self, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> CellGroup:
        """Load or train the group's original model and oracle and score both."""
        raise NotImplementedError

    def stages(self, group: CellGroup) -> Iterator[tuple[str, CellGroup]]:
        """The prepared group's (label, group) pairs, each with an original and an oracle scored (label: "" for one)."""
        yield "", group

    def check_oracles(self, group: CellGroup) -> None:
        """Raise UserError, before any cell is scored, when an oracle's retain accuracy falls more than
        `ORACLE_TOLERANCE` points below the original model's (kinds without `retain_metric` are not checked)."""
        metric = self.kind.retain_metric
        if metric is None:
            return
        for label, stage in self.stages(group):
            original, oracle = stage.original_metrics.get(metric), stage.oracle_metrics.get(metric)
            if original is None or oracle is None or oracle >= original - ORACLE_TOLERANCE:
                continue
            where = ", ".join(part for part in (group.forget.text, f"seed {group.seed}", label) if part)
            fix = ("set `oracle_steps: original` under the spec's `train:`" if self.kind.spec.train.oracle_steps == "epochs"
                   else "train longer (the spec's `train: epochs`)")
            raise UserError(
                f"the oracle of {where} is undertrained: its {metric} is {oracle:.1f} against the original model's "
                f"{original:.1f}, more than {ORACLE_TOLERANCE:g} points below; train it to the original's standard: {fix}"
            )

    def outcome(self, cell: Cell, group: CellGroup) -> Outcome:
        """Run the cell's method on the group's original model and score its output."""
        raise NotImplementedError
