"""The single protocol: a cell is one unlearning call from the cell's original model, scored against the oracle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearn.harness.cells import CellGroup, Outcome
from unlearn.harness.protocols.base import Protocol
from unlearn.metrics import Scores

if TYPE_CHECKING:
    from unlearn.forget import ForgetManifest, ForgetSpec
    from unlearn.harness.cells import Cell


class Single(Protocol):
    """The group: the original model of the seed and the oracle (`retrain` without the forget set), both scored."""

    def prepare(self, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> CellGroup:
        models, scoring = self.models, self.scoring
        splits = self.kind.splits(manifest)
        original_key = self.kind.original_key(seed)
        original = models.load_or_train_original(seed)
        oracle = models.run_method(models.oracle_choice, original.model, original_key, manifest.sha256, splits, seed)
        group = CellGroup(forget, manifest, seed, splits, original.model, original.key_hash, oracle.key or "")
        group.oracle_eval = scoring.evaluation(oracle.model, group, models.oracle_choice)
        group.original_eval = scoring.evaluation(original.model, group, None)
        group.oracle_scores = scoring.score(group.oracle_eval)
        group.original_scores = scoring.score(group.original_eval)
        return group

    def outcome(self, cell: Cell, group: CellGroup) -> Outcome:
        """Run the cell's method on the group's original model and score its output.

        The oracle's own cell (its cached model has the group oracle's key) takes the group's evaluation of the
        oracle instead of scoring the same model twice."""
        original_key = self.kind.original_key(cell.seed)
        out = self.models.run_method(cell.method, group.original, original_key, cell.manifest.sha256, group.splits,
                                     cell.seed)
        if out.key is not None and out.key == group.oracle_key:
            evaluation = group.oracle_eval
            scores = Scores(dict(group.oracle_scores.values), dict(group.oracle_scores.info))
        else:
            evaluation = self.scoring.evaluation(out.model, group, cell.method)
            scores = self.scoring.score(evaluation)
        return Outcome(scores, out.seconds, out.from_cache, out.info, self.kind.artifacts(cell, group, evaluation))
