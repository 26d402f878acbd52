"""Corrective unlearning: did removing the identified manipulated samples remove the manipulation?"""

from __future__ import annotations

from unlearn.metrics.base import Evaluation, metric


@metric("corrective", needs=("manip_true", "manip_target"), produces=("Manip-Acc", "ASR"))
def corrective(ev: Evaluation) -> dict[str, float]:
    """Manip-Acc = accuracy on the manipulated test images with their true labels (poison: every test image
    not of the target class, with the trigger; interclass: the two confused classes' test images);
    ASR = the attack success rate, the share of those images predicted as the manipulation wants (poison:
    the target class; interclass: the other class of the pair). Clean test accuracy is TA. In %.

    Only cells of a corrective forget set have these splits; the harness adds this metric to them.
    """
    return {"Manip-Acc": ev["manip_true"].accuracy, "ASR": ev["manip_target"].accuracy}
