"""Forget-set specs and manifests: deterministic, verified, and refusing bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearn.errors import UserError
from unlearn.forget import ForgetManifest, ForgetSpec, load_or_build, manifest_path, read_manifest
from unlearn.spec import REPO_ROOT


def build(tmp_path: Path, text: str, dataset, seed: int):
    return load_or_build(tmp_path, ForgetSpec.parse(text), dataset, seed)


def test_same_spec_and_seed_give_the_same_indices(tmp_path, digits_kind):
    ds = digits_kind.dataset
    a = build(tmp_path / "a", "random:0.1", ds, 0)
    b = build(tmp_path / "b", "random:0.1", ds, 0)
    again = build(tmp_path / "a", "random:0.1", ds, 0)  # read back from disk
    assert a.indices == b.indices == again.indices
    assert a.size == round(0.1 * len(ds.train)) == 126
    assert a.indices == sorted(set(a.indices)) and a.indices[0] >= 0 and a.indices[-1] < len(ds.train)
    other = build(tmp_path / "a", "random:0.1", ds, 1)
    assert other.indices != a.indices
    larger = build(tmp_path / "a", "random:0.5", ds, 0)
    assert set(a.indices) <= set(larger.indices)


def test_classwise_set_is_every_sample_of_the_class_for_every_seed(tmp_path, digits_kind):
    ds = digits_kind.dataset
    m0 = build(tmp_path, "class:3", ds, 0)
    m7 = build(tmp_path, "class:3", ds, 7)
    expected = [i for i, y in enumerate(ds.train.y.tolist()) if y == 3]
    assert m0.indices == m7.indices == expected
    assert m0.forgotten_classes == [3] and m0.seed is None
    spec = ForgetSpec.parse("class:3")
    assert manifest_path(tmp_path, "digits", spec, 0) == manifest_path(tmp_path, "digits", spec, 7)


def test_committed_manifests_are_what_the_builders_produce(tmp_path, digits_kind):
    committed = sorted((REPO_ROOT / "data" / "forget-sets" / "digits").glob("*.json"))
    assert committed, "the default grid's manifests are committed under data/forget-sets/digits"
    for path in committed:
        stored = read_manifest(path)
        rebuilt = build(tmp_path, stored.spec, digits_kind.dataset, stored.seed or 0)
        assert rebuilt.indices == stored.indices and rebuilt.sha256 == stored.sha256, path.name
        assert stored.dataset_fingerprint == digits_kind.dataset.fingerprint


def test_tampered_manifest_is_refused(tmp_path, digits_kind):
    m = build(tmp_path, "random:0.1", digits_kind.dataset, 0)
    path = manifest_path(tmp_path, "digits", ForgetSpec.parse("random:0.1"), 0)
    data = json.loads(path.read_text())
    data["indices"][0] = data["indices"][0] + 1 if data["indices"][1] != data["indices"][0] + 1 else 0
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="invalid forget-set manifest"):
        read_manifest(path)
    rebuilt = build(tmp_path, "random:0.1", digits_kind.dataset, 0)  # set aside, rebuilt, never used
    assert rebuilt.indices == m.indices and read_manifest(path) == m
    assert json.loads(path.with_name(path.name + ".corrupt").read_text())["indices"] == data["indices"]
    # a field outside the indices changed: only the checksum notices
    data = json.loads(m.to_json())
    data["provenance"] = {"note": "edited"}
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="checksum mismatch"):
        read_manifest(path)
    # a valid manifest of other data is refused, and left as it was
    fields = m.model_dump(by_alias=True, exclude={"checksum", "schema"})
    other = ForgetManifest.sealed(**{**fields, "dataset_fingerprint": "0" * 64})
    path.write_text(other.to_json())
    with pytest.raises(UserError, match="different digits data"):
        build(tmp_path, "random:0.1", digits_kind.dataset, 0)
    assert read_manifest(path) == other


@pytest.mark.parametrize(
    "text, message",
    [
        ("random:1.5", "outside"),
        ("random:0", "outside"),
        ("random:abc", "must be a number"),
        ("random:", "malformed"),
        ("rndom:0.1", "did you mean random"),
        ("class:x", "integer"),
        ("class", "malformed"),
    ],
)
def test_malformed_specs_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        ForgetSpec.parse(text)


def test_class_outside_the_label_set_is_refused(digits_kind):
    spec = ForgetSpec.parse("class:10")
    with pytest.raises(UserError, match="not a label of digits"):
        spec.builder.check(spec.params, digits_kind.dataset)
