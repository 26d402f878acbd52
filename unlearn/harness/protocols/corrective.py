"""The corrective protocol: the single protocol on manipulated data, with an ideal oracle.

A corrective forget set (`unlearn.forget.corrective`) manipulates the training data of its seed (poison,
interclass confusion) before the original model trains, and asks to forget the identified part of the
manipulated samples. Its cells run on a kind bound to the manipulated dataset, so every model key and
record hash includes the manipulation, and every split gains the manipulation's evaluation splits. The
group also scores the ideal oracle: retrain without every manipulated sample, not only the identified ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unlearn.forget.manifest import indices_sha256
from unlearn.harness.protocols.single import Single
from unlearn.harness.scoring import Scoring

if TYPE_CHECKING:
    from unlearn.data.manipulations import Manipulated
    from unlearn.forget import ForgetManifest, ForgetSpec
    from unlearn.harness.cells import CellGroup
    from unlearn.harness.models import Models


class Corrective(Single):
    """Cells on the manipulated data of their seed; the group adds the ideal oracle's scores."""

    holds_data = True

    def __init__(self, models: Models, scoring: Scoring, manipulated: Manipulated):
        super().__init__(models, scoring)
        self.manipulated = manipulated

    @classmethod
    def bind(cls, models: Models, forget: ForgetSpec, seed: int) -> Corrective:
        manipulated = forget.manipulation(models.kind.dataset, seed)
        derived = models.on(models.kind.with_data(manipulated.dataset, manipulated.splits))
        return cls(derived, Scoring(derived, forget.builder.extra_metrics), manipulated)

    @classmethod
    def binding_key(cls, forget: ForgetSpec, seed: int) -> tuple[Any, ...]:
        """The cells of one manipulation and seed (e.g. several identified fractions) share the manipulated data."""
        return (cls, forget.builder.manipulation_key(forget.params), seed, forget.builder.extra_metrics)

    def prepare(self, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> CellGroup:
        group = super().prepare(forget, manifest, seed)
        models = self.models
        every = [int(i) for i in self.manipulated.indices]
        all_manipulated = manifest.model_copy(update={"indices": every, "size": len(every), "sha256": indices_sha256(every)})
        original_key = self.kind.original_key(seed)
        ideal = models.run_method(models.oracle_choice, group.original, original_key, all_manipulated.sha256,
                                  self.kind.splits(all_manipulated), seed)
        group.ideal_oracle_scores = self.scoring.score(self.scoring.evaluation(ideal.model, group, models.oracle_choice))
        group.ideal_oracle_key = ideal.key
        return group
