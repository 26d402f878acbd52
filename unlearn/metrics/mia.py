"""Population membership-inference attacks, each its own metric with its own key: they never mix.

- The SVC family (SalUn's `SVC_MIA`): MIA-Efficacy (the number SalUn reports; feature =
  true-label confidence), and the reference's other features as separately named metrics:
  MIA-Correctness, MIA-Entropy, MIA-M-Entropy and MIA-Prob.
- MIA-LR-Entropy (SSD and Bad-Teacher's `get_membership_attack_prob`): a member rate.
- MIA-Loss: a loss-threshold attack (Yeom et al. 2018) with the threshold chosen on shadow data.

The SVC family and MIA-Loss share the shadow data of MIA-Efficacy: members = the first
|test| samples of D_r in training-index order (the reference's `Subset(retain,
range(len(test)))`), non-members = the test split; they report an efficacy = % of D_f
predicted non-member (higher = more forgotten). MIA-LR-Entropy trains on all of D_r
versus test and reports the % of D_f predicted member (higher = more remembered): it is
not comparable with the efficacies. For class-wise forgetting the test split holds the
remaining classes only (the same split as TA) for every attack here.

A degenerate attack is undefined, not 0 or 100 (`degenerate`): when its feature takes one value on
the shadow set, or when its classifier cannot separate shadow members from non-members beyond
chance in seeded stratified cross-validation (one-sided binomial test), its call on D_f is
tie-breaking. Its key is then left out of the values and its info says why under "undefined";
where the attack is defined its number is the reference's, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from unlearn.metrics.base import Evaluation, Scores, SplitOutputs, metric

LOG_CLAMP = 1e-30
"""log(0) is taken as log(1e-30) in the modified entropy, as in the reference."""

SVC_DESCRIPTION = "SVC(C=3, gamma='auto', kernel='rbf')"

FEATURES: dict[str, str] = {
    "correctness": "1 if the argmax of the softmax is the true label, else 0",
    "confidence": "softmax probability of the true label",
    "entropy": "prediction entropy -sum_c p_c log p_c in float32 (0 log 0 = 0)",
    "m-entropy": "modified entropy -(1-p_y) log p_y - sum_{c!=y} p_c log(1-p_c) (Song & Mittal; log 0 = log 1e-30)",
    "prob": "the full softmax probability vector",
    "loss": "per-sample cross-entropy loss -log p_y (from the logits)",
}
"""Per-sample attack features by kind, as recorded in each metric's info."""


def entropy(probs: Tensor | np.ndarray) -> np.ndarray:
    """Prediction entropy −Σ_c p_c log p_c per row, in float32 as the references, with 0 log 0 = 0.

    SalUn's `SVC_MIA` (and SSD's `get_membership_attack_prob`, which defines the same
    `entropy`) compute it in torch on float32 softmax outputs, with `torch.where(p > 0,
    p·log p, 0)`: an entry that underflowed to exactly 0 contributes 0. We do the same
    operations in the same precision (p·log p per entry, a torch row sum, then the
    sign), so the feature is the reference's float32 value rather than a float64 one
    that can round differently and move a sample across the SVC's boundary. The last
    bit of the row sum may still depend on the device's reduction order.
    """
    p = torch.as_tensor(probs, dtype=torch.float32)
    terms = p * torch.log(torch.where(p > 0, p, 1.0))  # 0·log 1 = 0 where p = 0
    return (-terms.sum(dim=1)).numpy()


def _clamped_log(x: np.ndarray) -> np.ndarray:
    return np.log(np.where(x > 0, x, LOG_CLAMP))


def modified_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Modified entropy (Song & Mittal 2021) per row: −(1 − p_y) log p_y − Σ_{c≠y} p_c log(1 − p_c).

    log 0 is taken as log(1e-30), the reference's clamp. The reference (SalUn's and
    SSD's `m_entropy`) computes something else, and we fix it:
    - its `log_reverse_prob` is log p where log(1 − p) is needed, so the c ≠ y terms
      are −p_c log p_c (entropy terms) instead of −p_c log(1 − p_c);
    - `modified_probs[:, labels] = ...` with a vector of labels replaces, in EVERY row,
      each column whose class occurs anywhere in the split, not just column y of that
      row. With all classes present, every row becomes −Σ_c (1 − p_c) log p_c, which
      ignores the sample's label; and a sample's feature depends on which other labels
      share its split (D_f of a class-wise forget set holds one class, the shadow
      splits all of them).

    Precision: float64. The reference computes its (wrong) feature in float32 like its
    entropy, but since we compute a different quantity there is no reference value for
    float32 to reproduce, so `entropy`'s float32 rule is deliberately not applied here.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(p))
    true = np.zeros_like(p, dtype=bool)
    true[rows, y] = True
    terms = np.where(true, -(1.0 - p) * _clamped_log(p), -p * _clamped_log(1.0 - p))
    return terms.sum(axis=1)


def attack_features(out: SplitOutputs, kind: str) -> np.ndarray:
    """One split's per-sample features of `kind` (see FEATURES): shape (n,), or (n, classes) for 'prob'."""
    if kind == "confidence":
        return out.confidence.numpy()
    if kind == "loss":
        return F.cross_entropy(out.logits, out.labels, reduction="none").double().numpy()
    probs = out.probs
    if kind == "correctness":
        return (probs.argmax(dim=1) == out.labels).int().numpy()
    if kind == "prob":
        return probs.numpy()
    if kind == "entropy":
        return entropy(probs)
    if kind == "m-entropy":
        return modified_entropy(probs.numpy(), out.labels.numpy())
    raise ValueError(f"unknown attack feature {kind!r}; known: {sorted(FEATURES)}")


def _design(members: np.ndarray, non_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shadow features as rows (members first) and their labels: 1 = member, 0 = non-member."""
    x = np.concatenate([members, non_members]).reshape(len(members) + len(non_members), -1)
    return x, np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])


def _svc() -> Any:
    from sklearn.svm import SVC  # scikit-learn loads when an attack runs, not with the metric registry

    return SVC(C=3, gamma="auto", kernel="rbf")


def svc_mia_efficacy(members: np.ndarray, non_members: np.ndarray, targets: np.ndarray) -> float:
    """Fit SVC(C=3, gamma='auto', rbf) on member (1) vs non-member (0) features; % of targets called non-member."""
    x, y = _design(members, non_members)
    predicted_member = _svc().fit(x, y).predict(np.asarray(targets).reshape(len(targets), -1))
    return 100.0 * float(1.0 - predicted_member.mean())


def svc_fit_predict(x: np.ndarray, y: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The SVC attack's calls (1 = member) on `targets` after fitting on (x, y): `degenerate`'s classifier."""
    return _svc().fit(x, y).predict(targets)


# -- degenerate attacks ---------------------------------------------------------------------------

FOLDS = 5
"""Stratified folds of the separability test (fewer when a shadow class has fewer samples)."""
FOLD_SEED = 0
"""The folds' shuffle seed: fixed, so the test is a function of the model's outputs alone."""
ALPHA = 0.05
"""Level of the one-sided binomial test of the cross-validated shadow accuracy against chance."""


def one_value(members: np.ndarray, non_members: np.ndarray) -> str | None:
    """Why an attack has nothing to learn when its feature takes one value on the shadow set, else None."""
    x, _ = _design(members, non_members)
    if len(x) and not bool(np.all(x == x[0])):
        return None
    value = "no samples" if len(x) == 0 else np.array2string(x[0], precision=4, threshold=4, edgeitems=1)
    return f"one feature value on the shadow set ({value[:40]}): the classifier has nothing to learn"


def degenerate(
    members: np.ndarray, non_members: np.ndarray, fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
) -> tuple[str | None, dict[str, Any]]:
    """Why the attack `fit_predict` (fit on x, y; calls on targets) is undefined on this shadow set, or None; and
    what the test found, for the info.

    (a) The feature takes one value on the shadow set: nothing to learn, the call on D_f is the classifier's tie
    break. (b) The classifier does not separate the shadow set beyond chance: it is fitted and scored in
    `FOLDS`-fold stratified cross-validation (shuffled with `FOLD_SEED`), and the number of held-out shadow
    samples it calls right is tested against chance (the larger shadow class's share; 50 % for the equal-sized
    shadow sets here) with a one-sided binomial test (scipy.stats.binomtest); p > `ALPHA` is undefined.
    """
    one = one_value(members, non_members)
    if one is not None:
        return one, {}
    x, y = _design(members, non_members)
    folds = min(FOLDS, len(members), len(non_members))
    if folds < 2:
        return "fewer than two shadow members or non-members: the separability test needs two folds", {}
    from scipy.stats import binomtest
    from sklearn.model_selection import StratifiedKFold

    right = 0
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=FOLD_SEED).split(x, y):
        right += int((fit_predict(x[train], y[train], x[held]) == y[held]).sum())
    chance = max(len(members), len(non_members)) / len(x)
    p = float(binomtest(right, len(x), chance, alternative="greater").pvalue)
    found = {"shadow_cv_accuracy": 100.0 * right / len(x), "shadow_cv_p": p,
             "separability_test": f"{folds}-fold stratified CV (seed {FOLD_SEED}), one-sided binomial test vs "
                                  f"chance {100 * chance:.1f} %, alpha {ALPHA:g}"}
    if p > ALPHA:
        return (f"shadow set not separable beyond chance: {folds}-fold CV accuracy {found['shadow_cv_accuracy']:.1f} % "
                f"vs {100 * chance:.1f} %, one-sided binomial p = {p:.3g} > {ALPHA:g}"), found
    return None, found


LR_C = 2.0
"""Binary logistic regression with C = 2 is the reference's model (see `lr_member_rate`)."""


def lr_member_rate(members: np.ndarray, non_members: np.ndarray, targets: np.ndarray) -> float:
    """Fit a balanced lbfgs LogisticRegression on member (1) vs non-member (0) features; % of targets called member.

    The reference passes `multi_class="multinomial"`, removed from scikit-learn (1.9
    rejects it). On two classes that option fits a softmax with one weight row per
    class and penalises both rows, which is the binary model with the L2 penalty
    halved: binary `C=2` reproduces the reference's `C=1` fit exactly (tests check
    this against a direct fit of the two-row model); binary `C=1` would not.
    """
    x, y = _design(members, non_members)
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=LR_C, class_weight="balanced", solver="lbfgs")
    clf.fit(x, y)
    return 100.0 * float(clf.predict(np.asarray(targets).reshape(len(targets), -1)).mean())


NOBODY = -1.0
"""The loss threshold that calls no sample a member (cross-entropy is never negative)."""


def loss_threshold(member_losses: np.ndarray, non_member_losses: np.ndarray) -> tuple[float, float]:
    """The τ of "member iff loss <= τ" with the best balanced accuracy on shadow data, and that accuracy (%).

    Candidates: −1 (nobody is a member), then the midpoints between consecutive distinct
    values of the sorted pooled shadow losses. Balanced accuracy = (TPR + TNR) / 2; ties
    go to the smallest τ, so when no midpoint beats chance (50 %) the attack calls no
    sample a member.
    """
    members = np.sort(np.asarray(member_losses, dtype=np.float64))
    non_members = np.sort(np.asarray(non_member_losses, dtype=np.float64))
    if len(members) == 0 or len(non_members) == 0:
        raise ValueError("a loss threshold needs shadow members and shadow non-members")
    values = np.unique(np.concatenate([members, non_members]))
    candidates = np.concatenate([[NOBODY], values[:-1] + (values[1:] - values[:-1]) / 2])
    true_pos = np.searchsorted(members, candidates, side="right")  # members with loss <= τ
    true_neg = len(non_members) - np.searchsorted(non_members, candidates, side="right")
    score = true_pos * len(non_members) + true_neg * len(members)  # ∝ balanced accuracy, exact in integers
    best = int(np.argmax(score))  # first maximum = smallest τ
    balanced = 50.0 * (true_pos[best] / len(members) + true_neg[best] / len(non_members))
    return float(candidates[best]), float(balanced)


# -- shadow data ----------------------------------------------------------------------------------


def _shadow(ev: Evaluation, non_member_split: str) -> tuple[SplitOutputs, SplitOutputs, dict[str, Any]]:
    """Shadow members (the first |non-members| of D_r), shadow non-members, and their description for info."""
    non_members = ev[non_member_split]
    retain = ev["retain"]
    n = min(len(non_members), len(retain))
    members = SplitOutputs(retain.logits[:n], retain.labels[:n])
    info = {
        "shadow_members": f"retain[:{n}] (first |{non_member_split}| samples of D_r, training-index order)",
        "shadow_non_members": f"{non_member_split} ({len(non_members)}{_remaining_note(ev, non_member_split)})",
        "n_shadow_members": n,
        "n_shadow_non_members": len(non_members),
        **_targets(ev),
    }
    return members, non_members, info


def _remaining_note(ev: Evaluation, split: str) -> str:
    return ", remaining classes only" if split in ("test", "val") and ev.has("test_forgotten") else ""


def _targets(ev: Evaluation) -> dict[str, Any]:
    return {"targets": f"forget ({len(ev['forget'])})", "n_targets": len(ev["forget"])}


def _svc_attack(ev: Evaluation, kind: str, key: str, non_member_split: str = "test") -> Scores:
    """The SVC attack on one feature: % of D_f called non-member (undefined when `degenerate`), with its shadow data."""
    members, non_members, info = _shadow(ev, non_member_split)
    shadow = attack_features(members, kind), attack_features(non_members, kind)
    info.update(classifier=SVC_DESCRIPTION, feature=f"{kind}: {FEATURES[kind]}", score="% of targets non-member")
    return _unless_degenerate(key, info, shadow, svc_fit_predict,
                              lambda: svc_mia_efficacy(*shadow, attack_features(ev["forget"], kind)))


def _unless_degenerate(key: str, info: dict[str, Any], shadow: tuple[np.ndarray, np.ndarray],
                       fit_predict: Callable[..., np.ndarray], value: Callable[[], float]) -> Scores:
    """`key` = value() when the attack is not `degenerate` on `shadow`; else no value and info["undefined"] says why."""
    reason, found = degenerate(*shadow, fit_predict)
    info.update(found)
    if reason is not None:
        info["undefined"] = reason
        return Scores({}, info)
    return Scores({key: value()}, info)


def loss_fit_predict(x: np.ndarray, y: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The loss-threshold attack's calls (1 = member iff loss <= τ, τ from `loss_threshold` on (x, y))."""
    tau, _ = loss_threshold(x[y == 1, 0], x[y == 0, 0])
    return (targets[:, 0] <= tau).astype(float)


# -- the metrics ---------------------------------------------------------------------------------------


@metric("mia-efficacy", needs=("retain", "test", "forget"), produces=("MIA-Efficacy",))
def mia_efficacy(ev: Evaluation) -> Scores:
    """MIA-Efficacy (SalUn's SVC_MIA_forget_efficacy): % of D_f an SVC on confidence calls non-member.

    Shadow members are the first |test| samples of D_r (in training-index order, as the
    reference's `Subset(retain, range(len(test)))`), shadow non-members the test split;
    the feature is the softmax probability of the true label. For class-wise forgetting
    the test split holds the remaining classes (the same split as TA).
    """
    return _svc_attack(ev, "confidence", "MIA-Efficacy")


@metric("mia-efficacy-val", needs=("retain", "val", "forget"), produces=("MIA-Efficacy-val",))
def mia_efficacy_val(ev: Evaluation) -> Scores:
    """MIA-Efficacy with the validation split as shadow non-members (and the first |val| of D_r as members).

    Not in the SalUn table: it is MIA-Efficacy's twin for tuning, so that choosing
    hyperparameters never reads the test set.
    """
    return _svc_attack(ev, "confidence", "MIA-Efficacy-val", non_member_split="val")


@metric("mia-correctness", needs=("retain", "test", "forget"), produces=("MIA-Correctness",))
def mia_correctness(ev: Evaluation) -> Scores:
    """MIA-Correctness: MIA-Efficacy's SVC attack on correctness (1 if the prediction is right, else 0).

    Shadow data, classifier and direction (% of D_f called non-member) as MIA-Efficacy;
    SalUn's SVC_MIA "correctness" entry.
    """
    return _svc_attack(ev, "correctness", "MIA-Correctness")


@metric("mia-entropy", needs=("retain", "test", "forget"), produces=("MIA-Entropy",))
def mia_entropy(ev: Evaluation) -> Scores:
    """MIA-Entropy: MIA-Efficacy's SVC attack on the prediction entropy −Σ p log p (0 log 0 = 0).

    Shadow data, classifier and direction as MIA-Efficacy; SalUn's SVC_MIA "entropy"
    entry, with its float32 feature (see `entropy`). Not MIA-LR-Entropy (another
    classifier, shadow data and direction).
    """
    return _svc_attack(ev, "entropy", "MIA-Entropy")


@metric("mia-m-entropy", needs=("retain", "test", "forget"), produces=("MIA-M-Entropy",))
def mia_m_entropy(ev: Evaluation) -> Scores:
    """MIA-M-Entropy: MIA-Efficacy's SVC attack on the modified entropy of Song & Mittal (2021).

    Shadow data, classifier and direction as MIA-Efficacy. SalUn's SVC_MIA "m_entropy"
    entry computes the feature wrongly; we use the correct formula (see
    `modified_entropy` for what the reference does), so the numbers differ from the
    reference's.
    """
    return _svc_attack(ev, "m-entropy", "MIA-M-Entropy")


@metric("mia-prob", needs=("retain", "test", "forget"), produces=("MIA-Prob",))
def mia_prob(ev: Evaluation) -> Scores:
    """MIA-Prob: MIA-Efficacy's SVC attack on the full softmax probability vector (one SVC, C inputs).

    Shadow data, classifier and direction as MIA-Efficacy; SalUn's SVC_MIA "prob" entry.
    Caveat for class-wise forgetting: the shadow data (remaining classes only) holds no
    probability vector peaked on the forgotten class, so D_f lies far from every support
    vector and the SVC's constant term decides; the number then says little about
    memorisation (the original digits model scores 100 on class:3). With gamma='auto'
    (1/C) the kernel is also nearly flat on probability vectors, a weak attack.
    """
    return _svc_attack(ev, "prob", "MIA-Prob")


@metric("mia-lr-entropy", needs=("retain", "test", "forget"), produces=("MIA-LR-Entropy",))
def mia_lr_entropy(ev: Evaluation) -> Scores:
    """MIA-LR-Entropy (SSD / Bad-Teacher `get_membership_attack_prob`): % of D_f predicted MEMBER.

    Logistic regression (class_weight='balanced', lbfgs) on the prediction entropy (in
    float32, as SSD's: see `entropy`), trained on ALL of D_r (label 1) vs the test split
    (label 0); the score is the mean predicted member rate on D_f ×100, so higher = more
    remembered (the opposite direction of the efficacies). Not comparable with
    MIA-Efficacy: different classifier, shadow data and direction; never mix the two.
    The reference's `multi_class="multinomial"` is dropped (removed from scikit-learn);
    we fit the equivalent binary model, see `lr_member_rate`. For class-wise forgetting
    the test split holds the remaining classes; SSD's full-class script passes the
    whole test set, forgotten class included.

    Undefined when the entropy takes one value on the shadow data ((a) of `degenerate`). The separability test
    (b) is not applied: the shadow classes are of unequal size and the model is class-balanced, so its accuracy
    is not a test against a fixed chance level; the score is a member rate, not a tie-broken efficacy.
    """
    retain, test, forget = ev["retain"], ev["test"], ev["forget"]
    shadow = attack_features(retain, "entropy"), attack_features(test, "entropy")
    info = {
        "shadow_members": f"retain (all {len(retain)} samples of D_r)",
        "shadow_non_members": f"test ({len(test)}{_remaining_note(ev, 'test')})",
        "n_shadow_members": len(retain),
        "n_shadow_non_members": len(test),
        **_targets(ev),
        "classifier": f"LogisticRegression(C={LR_C:g}, class_weight='balanced', solver='lbfgs')",
        "feature": f"entropy: {FEATURES['entropy']}",
        "score": "% of targets member",
    }
    reason = one_value(*shadow)  # (a) of `degenerate` only: see the docstring
    if reason is not None:
        info["undefined"] = reason
        return Scores({}, info)
    value = lr_member_rate(*shadow, attack_features(forget, "entropy"))
    return Scores({"MIA-LR-Entropy": value}, info)


@metric("mia-loss", needs=("retain", "test", "forget"), produces=("MIA-Loss",))
def mia_loss(ev: Evaluation) -> Scores:
    """MIA-Loss: a loss-threshold attack (Yeom et al. 2018); % of D_f called non-member (as MIA-Efficacy).

    A sample is called a member iff its cross-entropy loss is <= τ, where τ maximises the
    balanced accuracy on MIA-Efficacy's shadow data (members = first |test| of D_r,
    non-members = test); candidates and tie-breaking are those of `loss_threshold`.
    τ and the shadow balanced accuracy (%) are recorded in the info. Undefined when `degenerate` (the threshold
    rule fitted and scored in cross-validation on the shadow data).
    """
    members, non_members, info = _shadow(ev, "test")
    shadow = attack_features(members, "loss"), attack_features(non_members, "loss")
    tau, balanced = loss_threshold(*shadow)
    info.update(
        classifier="threshold: member iff loss <= threshold, chosen for the best shadow balanced accuracy",
        feature=f"loss: {FEATURES['loss']}",
        threshold=tau,
        shadow_balanced_accuracy=balanced,
        score="% of targets non-member",
    )
    return _unless_degenerate("MIA-Loss", info, shadow, loss_fit_predict,
                              lambda: 100.0 * float((attack_features(ev["forget"], "loss") > tau).mean()))
