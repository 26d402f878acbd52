"""read_checkpoint: format by content, pickles refused (or loaded weights-only), one-line errors for bad files."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from unlearn.checkpoints import read_checkpoint, save_weights
from unlearn.errors import UserError


class Evil:
    """Unpickling this runs `exec`, which writes a marker file: a stand-in for a malicious checkpoint."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open(r'{self.target}', 'w').write('x')",))


def _linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def _refusal(path: Path, allow_pickle: bool = False) -> str:
    with pytest.raises(UserError) as info:
        read_checkpoint(path, allow_pickle=allow_pickle)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    return message


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_safetensors_round_trip_whatever_the_name(tmp_path: Path) -> None:
    model = _linear()
    path = tmp_path / "model.safetensors"
    save_weights(model, path, {"note": "x"})
    _assert_same(read_checkpoint(path), model.state_dict())
    renamed = tmp_path / "model.pt"
    shutil.copyfile(path, renamed)
    _assert_same(read_checkpoint(renamed), model.state_dict())


def _write_evil(form: str, tmp_path: Path, target: Path) -> Path:
    raw = pickle.dumps(Evil(target))
    if form == "raw-pickle":
        path = tmp_path / "evil.pt"
        path.write_bytes(raw)
    elif form == "torch-zip":
        path = tmp_path / "evil_zip.pt"
        torch.save({"w": Evil(target)}, path)
    else:
        path = tmp_path / "evil.safetensors"
        path.write_bytes(raw)
    assert not target.exists(), "writing the payload must not run it"
    return path


@pytest.mark.parametrize("form", ["raw-pickle", "torch-zip", "raw-pickle-named-safetensors"])
def test_malicious_pickle_never_runs(form: str, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    path = _write_evil(form, tmp_path, pwned)

    message = _refusal(path)
    assert "pickle" in message and "--allow-pickle" in message and "weights_only=True" in message
    assert not pwned.exists()

    message = _refusal(path, allow_pickle=True)
    assert "weights-only loader refused" in message
    assert not pwned.exists()

    # Last: unpickling these same bytes unsafely does write the marker, so the two checks above could fail.
    if form == "torch-zip":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert pwned.exists()


def test_pickled_state_dict_loads_only_when_allowed(tmp_path: Path) -> None:
    state = _linear().state_dict()
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    wrapped = tmp_path / "wrapped.safetensors"  # a pickle despite its name
    torch.save({"state_dict": state, "epoch": 3}, wrapped)
    for path in (plain, wrapped):
        assert "pickle" in _refusal(path)
        _assert_same(read_checkpoint(path, allow_pickle=True), state)


def test_pickle_without_a_state_dict(tmp_path: Path) -> None:
    as_list = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], as_list)
    assert "holds no state dict (found a list)" in _refusal(as_list, allow_pickle=True)
    mixed = tmp_path / "mixed.pt"
    torch.save({"w": torch.zeros(2), "epoch": 3}, mixed)
    assert "'epoch' is a int" in _refusal(mixed, allow_pickle=True)


def test_truncated_torch_zip_is_unreadable(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save(_linear().state_dict(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:-40])
    assert "unreadable" in _refusal(cut, allow_pickle=True)


def test_bad_files_get_distinct_one_line_messages(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    save_weights(_linear(), good)
    data = good.read_bytes()
    header_len = int.from_bytes(data[:8], "little")

    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    short_data = tmp_path / "short_data.safetensors"
    short_data.write_bytes(data[:-10])
    short_header = tmp_path / "short_header.safetensors"
    short_header.write_bytes(data[: 8 + header_len // 2])
    text = tmp_path / "notes.safetensors"
    text.write_text("these are not the weights you are looking for\n")
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    missing = tmp_path / "missing.safetensors"

    messages = {
        "empty": _refusal(empty),
        "data": _refusal(short_data),
        "header": _refusal(short_header),
        "text": _refusal(text),
        "folder": _refusal(folder),
        "missing": _refusal(missing),
    }
    assert "empty file" in messages["empty"]
    assert f"truncated: expected {len(data)} bytes, file has {len(data) - 10}" in messages["data"]
    assert "truncated: expected at least" in messages["header"]
    assert "not a checkpoint" in messages["text"]
    assert "is a directory" in messages["folder"]
    assert "no such file" in messages["missing"]
    assert len({m.split(": ", 1)[1] for m in messages.values()}) == len(messages)
