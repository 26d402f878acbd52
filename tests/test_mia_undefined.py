"""A degenerate membership attack (one feature value on the shadow set, or a shadow set its classifier cannot
separate beyond chance) is recorded as undefined with a reason, left out of the gaps, and shown as such."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC
from test_leaderboard_stats import record
from test_mia import ConfidenceModel, split

from unlearn.leaderboard import summarize
from unlearn.leaderboard.render import markdown_table
from unlearn.metrics import Evaluation, evaluate
from unlearn.metrics.base import gaps, gaps_left_out, undefined_keys
from unlearn.results import ResultRecord

RNG_SEED = 3


def confidence_eval(members: np.ndarray, non_members: np.ndarray, forget: np.ndarray) -> Evaluation:
    """ConfidenceModel splits: retain = the shadow members (first |test|), test = the shadow non-members."""
    return Evaluation(ConfidenceModel(), {"retain": split(list(members)), "test": split(list(non_members)),
                                          "forget": split(list(forget))})


def test_a_correctness_feature_with_one_value_on_the_shadow_set_is_undefined():
    rng = np.random.default_rng(RNG_SEED)
    ev = confidence_eval(rng.uniform(0.9, 0.99, 20), rng.uniform(0.6, 0.8, 20), rng.uniform(0.3, 0.9, 10))
    scores = evaluate(ev, ["mia-correctness", "mia-efficacy"])
    assert "MIA-Correctness" not in scores.values  # every shadow sample is classified right: feature all 1
    assert "one feature value" in scores.info["mia-correctness"]["undefined"]
    assert "MIA-Efficacy" in scores.values and "undefined" not in scores.info["mia-efficacy"]


@pytest.mark.parametrize("name,key", [("mia-efficacy", "MIA-Efficacy"), ("mia-entropy", "MIA-Entropy"),
                                      ("mia-loss", "MIA-Loss")])
def test_members_and_non_members_from_one_distribution_are_undefined(name, key):
    rng = np.random.default_rng(RNG_SEED)
    ev = confidence_eval(rng.uniform(0.55, 0.99, 40), rng.uniform(0.55, 0.99, 40), rng.uniform(0.55, 0.99, 10))
    scores = evaluate(ev, [name])
    assert key not in scores.values
    reason = scores.info[name]["undefined"]
    assert "chance" in reason and "binomial" in reason
    r = record("m", 0, {"UA": 0.0, "RA": 100.0})  # the reason fits a record
    ResultRecord.model_validate({**r.model_dump(by_alias=True), "undefined": {"method": undefined_keys(scores)},
                                 "gaps_left_out": gaps_left_out([key], undefined_keys(scores), {})})


def test_a_separable_shadow_set_is_defined_and_the_reference_number():
    rng = np.random.default_rng(RNG_SEED)
    members, non_members = rng.uniform(0.95, 0.999, 20), rng.uniform(0.55, 0.85, 20)
    forget = np.r_[rng.uniform(0.95, 0.999, 6), rng.uniform(0.55, 0.85, 4)]
    ev = confidence_eval(members, non_members, forget)
    scores = evaluate(ev, ["mia-efficacy"])
    feats = {s: ev[s].confidence.numpy().reshape(-1, 1) for s in ("retain", "test", "forget")}
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(np.r_[feats["retain"], feats["test"]], np.r_[[1] * 20, [0] * 20])
    assert scores.values["MIA-Efficacy"] == 100.0 * (1 - clf.predict(feats["forget"]).mean())
    info = scores.info["mia-efficacy"]
    assert "undefined" not in info and info["shadow_cv_p"] < 0.05


def test_gaps_leave_out_a_key_undefined_for_the_model_or_the_oracle():
    keys = ["UA", "RA", "MIA-Efficacy"]
    oracle = {"UA": 10.0, "RA": 100.0, "MIA-Efficacy": 20.0}
    out = gaps({"UA": 4.0, "RA": 98.0}, oracle, keys)
    assert out == {"UA": 6.0, "RA": 2.0, "Avg. Gap": 4.0}
    assert gaps({"UA": 4.0, "RA": 98.0, "MIA-Efficacy": 0.0}, {"UA": 10.0, "RA": 100.0}, keys)["Avg. Gap"] == 4.0
    assert gaps({"UA": 4.0, "RA": 98.0, "MIA-Efficacy": 50.0}, oracle, keys)["Avg. Gap"] == pytest.approx(38 / 3)
    left = gaps_left_out(keys, {"MIA-Efficacy": "one value"}, {})
    assert list(left) == ["MIA-Efficacy"] and left["MIA-Efficacy"] == "undefined for the method"
    assert gaps_left_out(keys, {}, {"MIA-Efficacy": "chance"}) == {"MIA-Efficacy": "undefined for the oracle"}


def test_the_leaderboard_shows_an_undefined_mia_key_and_marks_the_shorter_avg_gap():
    oracle = {"UA": 100.0, "RA": 100.0, "MIA-Efficacy": 100.0}
    keys = ("UA", "RA", "MIA-Efficacy")

    def cell(method: str, seed: int, scores: dict[str, float]) -> object:
        r = record(method, seed, {"MIA-Efficacy": 0.0, **scores, "RA": 100.0}, oracle=oracle,
                   original={"UA": 0.0, "RA": 100.0, "MIA-Efficacy": 0.0}, gap_metrics=keys)
        if "MIA-Efficacy" in scores:
            return r
        # what the harness writes for a seed whose attack is undefined
        metrics = {k: v for k, v in r.metrics.items() if k != "MIA-Efficacy"}
        return r.model_copy(update={"metrics": metrics, "gaps": gaps(metrics, r.oracle_metrics, keys),
                                    "gaps_left_out": gaps_left_out(keys, {"MIA-Efficacy": "why"}, {}),
                                    "undefined": {"method": {"MIA-Efficacy": "why"}}})

    records = [cell("a", 0, {"UA": 90.0, "MIA-Efficacy": 90.0}), cell("a", 1, {"UA": 80.0}),
               cell("a", 2, {"UA": 85.0, "MIA-Efficacy": 95.0}),
               *(cell("b", s, {"UA": 50.0}) for s in range(3))]
    table = summarize(records)[0]
    a, b = table.row("a"), table.row("b")
    assert a.stats["MIA-Efficacy"].n == 2 and a.stats["MIA-Efficacy"].mean == pytest.approx(92.5)
    assert b.stats["MIA-Efficacy"].mean is None
    text = markdown_table(table)
    line_a = next(x for x in text.splitlines() if x.startswith("| ") and "| a |" in x)
    line_b = next(x for x in text.splitlines() if "| b |" in x)
    assert "(n = 2)" in line_a and "n.d." in line_b and "†" in line_a and "†" in line_b
    assert "n.d." in text.split("\n\n")[-1] and "†" in text.split("\n\n")[-1]  # the notes explain both marks
