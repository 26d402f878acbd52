"""Corrective forget sets: manipulations of the training data, identified fractions, two oracles, ASR."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import files_under, make_grid, spy_oracle_training

from unlearn.cli import main
from unlearn.errors import UserError
from unlearn.forget import BuildContext, ForgetSpec
from unlearn.harness import Workspace

POISON = "corrective:poison:0.1:0.1"


def manipulate(text: str, dataset, seed: int = 0):
    return ForgetSpec.parse(text).manipulation(dataset, seed)


def test_poison_triggers_and_relabels_a_seeded_fraction_outside_the_target(digits_kind):
    clean = digits_kind.dataset
    m = manipulate(POISON, clean)
    chosen = torch.as_tensor(m.indices)
    assert len(chosen) == round(0.1 * len(clean.train)) == 126
    assert not bool((clean.train.y[chosen] == 0).any()), "every poisoned sample is mislabelled"
    assert bool((m.dataset.train.y[chosen] == 0).all())
    assert bool((m.dataset.train.x[chosen][:, :, 6:, 6:] == 1.0).all()), "2x2 trigger at the maximum pixel value"
    assert torch.equal(m.dataset.train.x[chosen][:, :, :6, :], clean.train.x[chosen][:, :, :6, :])
    untouched = torch.ones(len(clean.train), dtype=torch.bool)
    untouched[chosen] = False
    assert torch.equal(m.dataset.train.x[untouched], clean.train.x[untouched])
    assert torch.equal(m.dataset.train.y[untouched], clean.train.y[untouched])
    assert torch.equal(m.dataset.test.x, clean.test.x) and torch.equal(m.dataset.val.y, clean.val.y)
    assert m.dataset.fingerprint != clean.fingerprint
    true, target = m.splits["manip_true"], m.splits["manip_target"]
    assert len(true) == int((clean.test.y != 0).sum()) and bool((target.y == 0).all())
    assert torch.equal(true.y, clean.test.y[clean.test.y != 0]) and bool((true.x[:, :, 6:, 6:] == 1.0).all())
    assert np.array_equal(manipulate(POISON, clean).indices, m.indices)
    assert not np.array_equal(manipulate(POISON, clean, seed=1).indices, m.indices)


def test_interclass_swaps_half_of_each_class(digits_kind):
    clean = digits_kind.dataset
    m = manipulate("corrective:interclass:3-5:1", clean)
    y0, y1 = clean.train.y, m.dataset.train.y
    for a, b in ((3, 5), (5, 3)):
        members = int((y0 == a).sum())
        assert int(((y0 == a) & (y1 == b)).sum()) == round(members / 2)
    assert len(m.indices) == int((y0 != y1).sum())
    true, target = m.splits["manip_true"], m.splits["manip_target"]
    assert set(true.y.tolist()) == {3, 5} and bool((true.y + target.y == 8).all())


def test_identified_sets_are_nested_parts_of_the_manipulated_samples(digits_kind):
    ds = digits_kind.dataset
    manipulated = set(manipulate(POISON, ds).indices.tolist())
    sets = []
    for identified in ("0.1", "0.25", "0.5", "1"):
        spec = ForgetSpec.parse(f"corrective:poison:0.1:{identified}")
        sets.append(set(spec.builder.build(spec.params, BuildContext(ds, 0)).indices.tolist()))
    assert [len(s) for s in sets] == [13, 32, 63, 126]
    assert sets[0] <= sets[1] <= sets[2] <= sets[3] == manipulated


@pytest.mark.parametrize("text, message", [
    ("corrective:poison:0.1:0", r"outside \(0, 1\]"),
    ("corrective:poison:0.1:1.5", r"outside \(0, 1\]"),
    ("corrective:poison:1.2:0.5", r"outside \(0, 1\)"),
    ("corrective:poison:0.1", "write corrective:poison"),
    ("corrective:posion:0.1:0.5", "did you mean poison"),
    ("corrective:poison:0.1:0.5:size=2", "no option 'size'"),
    ("corrective:interclass:3-3:1", "two different classes"),
    ("corrective:interclass:3:1", "A-B"),
])
def test_malformed_corrective_specs_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        ForgetSpec.parse(text)


@pytest.mark.parametrize("text, message", [
    ("corrective:poison:0.1:0.5:patch=8", "does not fit digits's 8×8 images"),
    ("corrective:poison:0.1:0.5:target=10", "not a label of digits"),
    ("corrective:interclass:3-12:1", "not a label of digits"),
])
def test_specs_that_do_not_fit_the_data_exit_2_and_write_nothing(tmp_path, text, message, capsys):
    code = main(["run", "--methods", "retrain", "--forget", text, "--seeds", "0", "--workdir", str(tmp_path),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert files_under(tmp_path / "data") == []


def test_corrective_cells_train_on_manipulated_data_with_two_oracles(tmp_path, digits_spec, digits_kind, shared_cache,
                                                                     monkeypatch):
    seen = spy_oracle_training(monkeypatch)
    workspace = Workspace.at(tmp_path)  # fresh cache: both oracles really train
    all_identified = "corrective:poison:0.1:1"
    runner = make_grid(digits_spec, digits_kind, workspace, ["retrain", "random-label"], [POISON, all_identified], [0])
    records = runner.run().records
    forget = ForgetSpec.parse(POISON)
    manipulated = set(manipulate(POISON, digits_kind.dataset).indices.tolist())
    identified = set(runner.models.build_manifest(forget, 0).indices)

    # the oracle retrained without the identified samples, then without all manipulated; identifying all of them
    # gives the ideal oracle again (from the cache), and every cell shares one poisoned original
    realistic, ideal = seen
    assert not set(realistic.index.tolist()) & identified
    kept_poison = sorted(manipulated - identified)
    positions = torch.isin(realistic.index, torch.as_tensor(kept_poison))
    assert int(positions.sum()) == len(kept_poison) and bool((realistic.y[positions] == 0).all())
    assert not set(ideal.index.tolist()) & manipulated

    retrain, rl, retrain_all, _ = records
    assert len({r.models["original"] for r in records}) == 1
    assert retrain_all.models["oracle"] == retrain.models["ideal_oracle"] == retrain_all.models["ideal_oracle"]
    for r in records:
        assert r.status == "ok" and r.config["metrics"][-1] == "corrective"
        assert r.config["data"] == manipulate(POISON, digits_kind.dataset).dataset.fingerprint != digits_kind.dataset.fingerprint
    assert retrain.original_metrics["ASR"] > 90, "the poisoned original follows the trigger"
    assert retrain.oracle_metrics["ASR"] > 50, "retraining without 10 % of the poison leaves the backdoor"
    assert retrain.ideal_oracle_metrics["ASR"] < 10 < retrain.ideal_oracle_metrics["Manip-Acc"]
    assert rl.metrics["ASR"] <= rl.original_metrics["ASR"]
    clean = make_grid(digits_spec, digits_kind, Workspace.at(tmp_path, cache_dir=shared_cache), ["retrain"],
                        ["random:0.1"], [0])
    assert retrain.models["original"] != clean.models.cache.key_hash(digits_kind.original_key(0))


def test_an_exported_poisoned_original_evaluates_as_the_cells_original(tmp_path, shared_cache, capsys):
    import json

    cell = ["--forget", "corrective:poison:0.1:0.5", "--seed", "0", "--workdir", str(tmp_path),
            "--cache-dir", str(shared_cache), "--device", "cpu", "--no-progress"]
    assert main(["export", *cell, "--out", str(tmp_path / "start")]) == 0
    capsys.readouterr()
    assert main(["evaluate", *cell, "--checkpoint", str(tmp_path / "start/original.safetensors"), "--json"]) == 0
    score = json.loads(capsys.readouterr().out)
    assert score["metrics"] == score["original_metrics"] and score["metrics"]["ASR"] > 90
    assert score["ideal_oracle_metrics"]["ASR"] < 10
    exported = json.loads((tmp_path / "start/forget-set.json").read_text())
    assert exported["size"] == 63 and exported["provenance"] == {"manipulated": 126, "identified": 63}
