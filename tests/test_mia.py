"""The membership-inference metrics agree with direct computations on hand-made examples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import entr, logsumexp
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC
from torch import nn

from unlearn.data.tensors import TensorData
from unlearn.metrics import METRICS, Evaluation, evaluate
from unlearn.metrics.mia import (
    attack_features,
    loss_threshold,
    lr_member_rate,
    modified_entropy,
    svc_mia_efficacy,
)

MIA_METRICS = {
    "mia-efficacy": "MIA-Efficacy",
    "mia-efficacy-val": "MIA-Efficacy-val",
    "mia-correctness": "MIA-Correctness",
    "mia-entropy": "MIA-Entropy",
    "mia-m-entropy": "MIA-M-Entropy",
    "mia-prob": "MIA-Prob",
    "mia-lr-entropy": "MIA-LR-Entropy",
    "mia-loss": "MIA-Loss",
}
TEST_SPLIT_METRICS = [name for name in MIA_METRICS if name != "mia-efficacy-val"]


class ConfidenceModel(nn.Module):
    """Two-class 'model' whose input pixel is the softmax probability it assigns to class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.flatten(1)[:, 0]
        return torch.stack([torch.log(p), torch.log1p(-p)], dim=1)


class LogitModel(nn.Module):
    """'Model' whose input pixels are its logits (one pixel per class)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def split(confidences: list[float]) -> TensorData:
    x = torch.tensor(confidences, dtype=torch.float32).view(-1, 1, 1, 1)
    return TensorData.of(x, torch.zeros(len(confidences), dtype=torch.long))


def logit_split(logits: np.ndarray, labels: np.ndarray) -> TensorData:
    x = torch.tensor(logits, dtype=torch.float32).view(len(labels), -1, 1, 1)
    return TensorData.of(x, torch.as_tensor(labels))


def loss_split(losses: list[float]) -> TensorData:
    """Class-0 samples of ConfidenceModel whose cross-entropy loss is `losses` (p_0 = exp(-loss))."""
    return split([math.exp(-v) for v in losses])


def three_class_splits(seed: int = 0) -> dict[str, TensorData]:
    """3-class retain (confident), test (diffuse, some wrong) and forget (mixed) splits of LogitModel; every
    attack separates its shadow set beyond chance, so none is undefined (tests/test_mia_undefined.py)."""
    rng = np.random.default_rng(seed)

    def make(n: int, margin: float, spread: float) -> TensorData:
        labels = rng.integers(0, 3, n)
        logits = rng.normal(0.0, spread, (n, 3))
        logits[np.arange(n), labels] += rng.normal(margin, 1.0, n)
        return logit_split(logits, labels)

    return {"retain": make(40, 4.0, 1.0), "test": make(15, 0.5, 1.0), "forget": make(12, 2.5, 1.2)}


def reference_entropy(probs: np.ndarray) -> np.ndarray:
    """SalUn's (and SSD's) `entropy`, transcribed: torch, float32 softmax outputs, p log p only where p > 0."""
    p = torch.as_tensor(probs, dtype=torch.float32)
    return (-torch.where(p > 0, p * p.log(), p.new([0.0])).sum(dim=-1)).numpy()


def direct_features(probs: np.ndarray, labels: np.ndarray, kind: str) -> np.ndarray:
    """The SalUn feature of `kind`, written out independently of unlearn.metrics.mia."""
    p = probs.astype(np.float64)
    rows = np.arange(len(labels))
    if kind == "correctness":
        return (probs.argmax(axis=1) == labels).astype(int)
    if kind == "confidence":
        return probs[rows, labels]
    if kind == "entropy":
        return reference_entropy(probs)
    if kind == "m-entropy":
        out = np.zeros(len(labels))
        for i, y in enumerate(labels):
            for c in range(p.shape[1]):
                if c == y:
                    out[i] -= (1 - p[i, c]) * math.log(max(p[i, c], 1e-30))
                else:
                    out[i] -= p[i, c] * math.log(max(1 - p[i, c], 1e-30))
        return out
    assert kind == "prob"
    return probs


def direct_svc_efficacy(ev: Evaluation, kind: str) -> float:
    n = len(ev["test"])
    feats = {s: direct_features(ev[s].probs.numpy(), ev[s].labels.numpy(), kind) for s in ("retain", "test", "forget")}
    x = np.concatenate([feats["retain"][:n], feats["test"]]).reshape(2 * n, -1)
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, np.r_[np.ones(n), np.zeros(n)])
    return 100.0 * (1 - clf.predict(feats["forget"].reshape(len(feats["forget"]), -1)).mean())


def test_svc_mia_efficacy_on_separable_confidences():
    members = np.array([0.99, 0.98, 0.97, 0.995, 0.985])
    non_members = np.array([0.30, 0.35, 0.40, 0.45, 0.50])
    targets = np.array([0.99, 0.975, 0.35, 0.42])  # two look like members, two do not
    assert svc_mia_efficacy(members, non_members, targets) == pytest.approx(50.0)


def test_metric_uses_the_first_test_size_retain_samples_and_the_true_label_confidence():
    retain = [0.99, 0.98, 0.97, 0.995, 0.985] + [0.4] * 20  # only the first |test| = 5 are shadow members
    test = [0.30, 0.35, 0.40, 0.45, 0.50]
    forget = [0.99, 0.99, 0.40, 0.40, 0.36]
    ev = Evaluation(ConfidenceModel(), {"retain": split(retain), "test": split(test), "forget": split(forget)})
    scores = evaluate(ev, ["mia-efficacy"])
    value = scores.values["MIA-Efficacy"]

    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(
        np.array(retain[:5] + test).reshape(-1, 1), np.array([1] * 5 + [0] * 5)
    )
    direct = 100.0 * (1 - clf.predict(np.array(forget).reshape(-1, 1)).mean())
    assert value == pytest.approx(direct) == pytest.approx(60.0)

    # Using the whole retain set as shadow members would give a different answer.
    clf_all = SVC(C=3, gamma="auto", kernel="rbf").fit(
        np.array(retain + test).reshape(-1, 1), np.array([1] * len(retain) + [0] * 5)
    )
    assert not math.isclose(100.0 * (1 - clf_all.predict(np.array(forget).reshape(-1, 1)).mean()), value)

    info = scores.info["mia-efficacy"]
    assert (info["n_shadow_members"], info["n_shadow_non_members"], info["n_targets"]) == (5, 5, 5)
    assert info["shadow_members"].startswith("retain[:5]") and info["shadow_non_members"] == "test (5)"


@pytest.mark.parametrize(
    "name, kind",
    [
        ("mia-efficacy", "confidence"),
        ("mia-correctness", "correctness"),
        ("mia-entropy", "entropy"),
        ("mia-m-entropy", "m-entropy"),
        ("mia-prob", "prob"),
    ],
)
def test_each_svc_variant_matches_a_direct_computation_on_three_classes(name, kind):
    ev = Evaluation(LogitModel(), three_class_splits())
    scores = METRICS.get(name)(ev)
    assert scores.values[MIA_METRICS[name]] == pytest.approx(direct_svc_efficacy(ev, kind))
    assert scores.info["n_shadow_members"] == 15 and scores.info["n_shadow_non_members"] == 15
    assert scores.info["n_targets"] == 12 and scores.info["shadow_members"].startswith("retain[:15]")
    assert scores.info["feature"].startswith(kind)


def test_the_svc_variants_are_different_numbers_on_the_same_model():
    ev = Evaluation(LogitModel(), three_class_splits())
    values = evaluate(ev, ["mia-efficacy", "mia-correctness", "mia-entropy", "mia-m-entropy", "mia-prob"]).values
    assert len(set(values.values())) >= 3


def reference_m_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """SalUn's `m_entropy`, transcribed to numpy with both of its mistakes."""
    log_prob = np.log(np.where(probs > 0, probs, 1e-30))
    log_reverse_prob = np.log(np.where(probs > 0, probs, 1e-30))  # log p where log(1 - p) is needed
    modified_probs = probs.copy()
    modified_probs[:, labels] = (1 - probs)[:, labels]  # every row, every label present in the split
    modified_log_probs = log_reverse_prob.copy()
    modified_log_probs[:, labels] = log_prob[:, labels]
    return -np.sum(modified_probs * modified_log_probs, axis=1)


def test_modified_entropy_is_song_and_mittal_not_the_reference_bug():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    labels = np.array([0, 1])
    by_hand = [
        -(0.3 * math.log(0.7)) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9),
        -(0.5 * math.log(0.5)) - 0.2 * math.log(0.8) - 0.3 * math.log(0.7),
    ]
    assert modified_entropy(probs, labels) == pytest.approx(by_hand, rel=1e-12)

    buggy = reference_m_entropy(probs, labels)
    buggy_by_hand = -(0.3 * math.log(0.7)) - 0.8 * math.log(0.2) - 0.1 * math.log(0.1)  # row 0, columns 0 and 1
    assert buggy[0] == pytest.approx(buggy_by_hand, rel=1e-12)
    assert not np.allclose(buggy, by_hand, rtol=0.05)
    # The reference's value for a sample depends on its split-mates' labels; ours does not.
    assert reference_m_entropy(probs[:1], labels[:1])[0] != pytest.approx(buggy[0])
    assert modified_entropy(probs[:1], labels[:1])[0] == pytest.approx(by_hand[0])


def test_zero_probabilities_use_0_log_0_and_the_reference_clamp():
    logits = np.array([[0.0, -1e4, -1e4], [0.0, -1e4, -1e4]])
    ev = Evaluation(LogitModel(), {"s": logit_split(logits, np.array([0, 1]))})
    probs = ev["s"].probs.numpy()
    assert probs[0].tolist() == [1.0, 0.0, 0.0]  # exact zeros and ones reach the features
    assert attack_features(ev["s"], "entropy").tolist() == [0.0, 0.0]
    # right and certain: 0; wrong and certain: -(1 - 0) log(1e-30) - 1 * log(1 - 1 -> 1e-30)
    assert attack_features(ev["s"], "m-entropy") == pytest.approx([0.0, -2 * math.log(1e-30)])


def test_the_entropy_feature_is_the_references_float32_value():
    # A softmax output (3 classes) on which float64 entropy, rounded to float32, is 1 ulp below float32's.
    logits = np.array([[-2.570023775100708, 3.3018126487731934, -3.21356201171875]])
    ev = Evaluation(LogitModel(), {"s": logit_split(logits, np.array([1]))})
    probs = ev["s"].probs.numpy()
    got = attack_features(ev["s"], "entropy")
    assert got.dtype == np.float32
    assert got.tolist() == reference_entropy(probs).tolist() == [np.float32(0.030367940664291382)]
    assert np.float32(entr(probs.astype(np.float64)).sum()) != got[0]  # the float64 value rounds differently


def direct_lr_member_rate(members: np.ndarray, non_members: np.ndarray, targets: np.ndarray) -> float:
    x = np.concatenate([members, non_members]).reshape(-1, 1)
    y = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    clf = LogisticRegression(C=2.0, class_weight="balanced", solver="lbfgs").fit(x, y)
    return 100.0 * clf.predict(np.asarray(targets).reshape(-1, 1)).mean()


def test_lr_entropy_trains_on_all_of_the_retain_set():
    # The first |test| retain samples are less confident than the test samples; the rest are confident.
    retain = [0.5, 0.52, 0.55, 0.51, 0.53] + [0.99, 0.98, 0.995, 0.97, 0.985] * 4
    test = [0.6, 0.65, 0.7, 0.62, 0.66]
    forget = [0.99, 0.97, 0.98, 0.6, 0.995]
    ev = Evaluation(ConfidenceModel(), {"retain": split(retain), "test": split(test), "forget": split(forget)})
    scores = METRICS.get("mia-lr-entropy")(ev)
    value = scores.values["MIA-LR-Entropy"]

    def h(ps: list[float]) -> np.ndarray:
        p = np.array(ps, dtype=np.float32).astype(np.float64)
        return entr(p) + entr(1 - p)

    assert value == pytest.approx(direct_lr_member_rate(h(retain), h(test), h(forget))) == pytest.approx(80.0)
    assert direct_lr_member_rate(h(retain[:5]), h(test), h(forget)) <= 20.0
    assert scores.info["n_shadow_members"] == 25 and scores.info["shadow_members"] == "retain (all 25 samples of D_r)"
    assert scores.info["score"] == "% of targets member"


def test_binary_logistic_regression_with_c_2_is_the_references_two_row_multinomial_fit():
    """The reference's `multi_class='multinomial'` fit on two classes, written out and minimised directly."""
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0.3, 0.4, 50), rng.normal(1.0, 0.5, 20)][:, None]
    y = np.r_[np.ones(50), np.zeros(20)]
    weight = np.where(y == 1, len(y) / (2 * 50), len(y) / (2 * 20))  # class_weight="balanced"
    onehot = np.stack([1 - y, y], axis=1)

    def objective(theta: np.ndarray) -> float:  # C = 1: sum of weighted cross-entropies + ||W||^2 / 2 over both rows
        w, b = theta[:2], theta[2:]
        z = x * w + b
        return -np.sum(weight * np.sum(onehot * (z - logsumexp(z, axis=1, keepdims=True)), axis=1)) + 0.5 * w @ w

    theta = minimize(objective, np.zeros(4), method="BFGS", options={"gtol": 1e-9}).x
    slope, intercept = theta[1] - theta[0], theta[3] - theta[2]
    boundaries = {}
    for c, same in ((2.0, True), (1.0, False)):
        clf = LogisticRegression(C=c, class_weight="balanced", solver="lbfgs", tol=1e-10).fit(x, y)
        close = np.allclose([clf.coef_[0, 0], clf.intercept_[0]], [slope, intercept], rtol=1e-4)
        assert close == same
        boundaries[c] = -clf.intercept_[0] / clf.coef_[0, 0]

    # The metric's classifier draws the reference's boundary: targets between the C=2 and C=1 boundaries tell.
    low, high = sorted(boundaries.values())
    edges = np.linspace(low - (high - low), high + (high - low), 31)
    targets = (edges[:-1] + edges[1:]) / 2  # none on a boundary, where the solver's tolerance would decide
    reference = 100.0 * np.mean(targets * slope + intercept > 0)
    assert lr_member_rate(x[y == 1], x[y == 0], targets) == pytest.approx(reference)
    c1 = LogisticRegression(C=1.0, class_weight="balanced").fit(x, y)
    assert 100.0 * c1.predict(targets[:, None]).mean() != pytest.approx(reference)


def memorising_splits(remembers_forget: bool) -> dict[str, TensorData]:
    """Retain confident and right; test diffuse and often wrong; forget like retain or like test."""
    rng = np.random.default_rng(3)

    def make(n: int, member: bool) -> TensorData:
        labels = rng.integers(0, 3, n)
        logits = rng.normal(0.0, 1.0, (n, 3))
        if member:
            logits[np.arange(n), labels] += 8.0
        else:
            wrong = (labels + 1 + rng.integers(0, 2, n)) % 3
            right = rng.random(n) < 0.5
            logits[np.arange(n), np.where(right, labels, wrong)] += 1.0
        return logit_split(logits, labels)

    return {"retain": make(60, True), "test": make(30, False), "forget": make(20, remembers_forget)}


def test_direction_memorised_forget_set_is_a_member_and_forgotten_one_is_not():
    names = TEST_SPLIT_METRICS
    remembered = evaluate(Evaluation(LogitModel(), memorising_splits(True)), names).values
    forgotten = evaluate(Evaluation(LogitModel(), memorising_splits(False)), names).values
    assert remembered["MIA-LR-Entropy"] >= 90 and forgotten["MIA-LR-Entropy"] <= 30
    for key in ("MIA-Efficacy", "MIA-Correctness", "MIA-Entropy", "MIA-M-Entropy", "MIA-Prob", "MIA-Loss"):
        assert remembered[key] <= 10, key
        assert forgotten[key] >= remembered[key] + 30, key


def test_loss_threshold_on_a_separable_case():
    members, non_members, targets = [0.1, 0.2, 0.3], [1.0, 1.5, 2.0], [0.05, 0.6, 0.7, 3.0]
    assert loss_threshold(np.array(members), np.array(non_members)) == pytest.approx((0.65, 100.0))

    retain = members + [5.0] * 10  # only the first |test| = 3 are shadow members
    splits = {"retain": loss_split(retain), "test": loss_split(non_members), "forget": loss_split(targets)}
    scores = METRICS.get("mia-loss")(Evaluation(ConfidenceModel(), splits))
    assert scores.values["MIA-Loss"] == pytest.approx(50.0)  # 0.7 and 3.0 are above τ = 0.65
    assert scores.info["threshold"] == pytest.approx(0.65, abs=1e-5)
    assert scores.info["shadow_balanced_accuracy"] == pytest.approx(100.0)
    assert (scores.info["n_shadow_members"], scores.info["n_shadow_non_members"]) == (3, 3)


def test_loss_threshold_ties_go_to_the_smallest_threshold_and_chance_calls_nobody_a_member():
    # τ = 0.2 and τ = 0.6 both reach 75 %.
    assert loss_threshold(np.array([0.1, 0.5]), np.array([0.3, 0.7])) == pytest.approx((0.2, 75.0))
    # Members have larger losses than non-members: no midpoint beats chance.
    assert loss_threshold(np.array([2.0, 3.0]), np.array([0.5, 1.0])) == (-1.0, 50.0)
    # Then the attack is degenerate: undefined, not an efficacy of 100 (calling nobody a member).
    splits = {"retain": loss_split([2.0, 3.0]), "test": loss_split([0.5, 1.0]), "forget": loss_split([0.1, 2.5])}
    scores = METRICS.get("mia-loss")(Evaluation(ConfidenceModel(), splits))
    assert scores.values == {} and "not separable beyond chance" in scores.info["undefined"]


def test_loss_threshold_agrees_with_a_brute_force_search():
    rng = np.random.default_rng(7)
    for _ in range(20):
        members = np.round(rng.exponential(0.5, rng.integers(1, 15)), 1)  # rounding makes ties
        non_members = np.round(rng.exponential(1.0, rng.integers(1, 15)), 1)
        values = sorted(set(members) | set(non_members))
        best = None
        for tau in [-1.0] + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)]:
            acc = 50 * (np.mean(members <= tau) + np.mean(non_members > tau))
            if best is None or acc > best[1] + 1e-12:
                best = (tau, acc)
        assert loss_threshold(members, non_members) == pytest.approx(best)


def test_every_variant_is_registered_under_its_own_key_with_json_info():
    assert len(set(MIA_METRICS.values())) == len(MIA_METRICS)
    for name, key in MIA_METRICS.items():
        assert METRICS.get(name).produces == (key,)
    splits = three_class_splits()
    splits["val"] = splits["test"]
    scores = evaluate(Evaluation(LogitModel(), splits), list(MIA_METRICS))
    assert sorted(scores.values) == sorted(MIA_METRICS.values())
    assert sorted(scores.info) == sorted(MIA_METRICS)
    json.dumps(scores.info, allow_nan=False)
    for name, info in scores.info.items():
        assert {"shadow_members", "shadow_non_members", "targets", "classifier", "feature", "score"} <= set(info), name


def test_class_wise_cells_say_that_test_holds_the_remaining_classes():
    splits = three_class_splits()
    splits["test_forgotten"] = splits["forget"]
    for name in ("mia-efficacy", "mia-lr-entropy"):
        assert "remaining classes" in METRICS.get(name)(Evaluation(LogitModel(), splits)).info["shadow_non_members"]
