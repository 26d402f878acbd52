"""MIA-Efficacy exactly as SalUn computes it: an SVC on the true-label confidence."""

from __future__ import annotations

import numpy as np
from sklearn.svm import SVC

from unlearn.metrics.base import Evaluation, metric


def svc_mia_efficacy(members: np.ndarray, non_members: np.ndarray, targets: np.ndarray) -> float:
    """Fit SVC(C=3, gamma='auto', rbf) on member (1) vs non-member (0) features; % of targets called non-member."""
    x = np.concatenate([members, non_members]).reshape(len(members) + len(non_members), -1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    predicted_member = clf.predict(np.asarray(targets).reshape(len(targets), -1))
    return 100.0 * float(1.0 - predicted_member.mean())


def _mia_efficacy(ev: Evaluation, non_member_split: str) -> float:
    shadow = ev[non_member_split]
    members = ev["retain"].confidence[: len(shadow)].numpy()
    return svc_mia_efficacy(members, shadow.confidence.numpy(), ev["forget"].confidence.numpy())


@metric("mia-efficacy", needs=("retain", "test", "forget"), produces=("MIA-Efficacy",))
def mia_efficacy(ev: Evaluation) -> dict[str, float]:
    """MIA-Efficacy (SalUn's SVC_MIA_forget_efficacy): % of D_f an SVC on confidence calls non-member.

    Shadow members are the first |test| samples of D_r (in training-index order, as the
    reference's `Subset(retain, range(len(test)))`), shadow non-members the test split;
    the feature is the softmax probability of the true label. For class-wise forgetting
    the test split holds the remaining classes (the same split as TA).
    """
    return {"MIA-Efficacy": _mia_efficacy(ev, "test")}


@metric("mia-efficacy-val", needs=("retain", "val", "forget"), produces=("MIA-Efficacy-val",))
def mia_efficacy_val(ev: Evaluation) -> dict[str, float]:
    """MIA-Efficacy with the validation split as shadow non-members (and the first |val| of D_r as members).

    Not in the SalUn table: it is MIA-Efficacy's twin for tuning, so that choosing
    hyperparameters never reads the test set.
    """
    return {"MIA-Efficacy-val": _mia_efficacy(ev, "val")}
