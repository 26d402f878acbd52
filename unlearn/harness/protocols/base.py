"""The Protocol base: how the cells of one (forget set, seed) are prepared, and how a method's outcome is produced."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from unlearn.forget import ForgetManifest, ForgetSpec
    from unlearn.harness.cells import Cell, CellGroup, Outcome
    from unlearn.harness.models import Models
    from unlearn.harness.plan import MethodChoice
    from unlearn.harness.scoring import Scoring


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

    def prepare(self, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> CellGroup:
        """Load or train the group's original model and oracle and score both."""
        raise NotImplementedError

    def outcome(self, cell: Cell, group: CellGroup) -> Outcome:
        """Run the cell's method on the group's original model and score its output."""
        raise NotImplementedError
