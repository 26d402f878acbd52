"""UA, RA, TA (and validation accuracy) as in the SalUn table."""

from __future__ import annotations

from unlearn.metrics.base import Evaluation, metric


@metric("accuracy", needs=("forget", "retain", "val", "test"), produces=("UA", "RA", "TA", "VA"))
def accuracy(ev: Evaluation) -> dict[str, float]:
    """UA = 100 − accuracy on D_f; RA on D_r; TA on test; VA on validation (all eval mode, in %).

    For class-wise forgetting TA and VA cover the remaining classes only and the
    forgotten class's test accuracy is reported separately as TA-forgotten.
    """
    out = {
        "UA": 100.0 - ev["forget"].accuracy,
        "RA": ev["retain"].accuracy,
        "TA": ev["test"].accuracy,
        "VA": ev["val"].accuracy,
    }
    if ev.has("test_forgotten"):
        out["TA-forgotten"] = ev["test_forgotten"].accuracy
    return out
