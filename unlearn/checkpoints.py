"""Model weights in and out.

Weights are written as safetensors. A user-supplied checkpoint is read by `read_checkpoint`: safetensors always,
a PyTorch pickle only when the user allows it, and then only through torch.load(weights_only=True).
"""

from __future__ import annotations

import json
import pickle
import re
import shlex
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from unlearn.atomic import atomic_write
from unlearn.errors import UserError


def save_weights(model: nn.Module, path: Path, metadata: dict[str, Any] | None = None) -> None:
    """Atomically write the model's state dict (on CPU) and JSON metadata to a safetensors file. Tied weights (a
    language model's input embedding and output head) are written once per name; loading ties them again."""
    state: dict[str, Tensor] = {}
    storages: set[int] = set()
    for key, value in model.state_dict().items():
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        state[key] = tensor.clone() if storage in storages else tensor  # safetensors refuses shared memory
        storages.add(storage)
    meta = {"unlearn": json.dumps(metadata or {}, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta), "model checkpoint")


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by `save_weights`: (state dict, metadata). Raises UserError if unreadable."""
    try:
        state = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("unlearn", "{}")
        return state, json.loads(raw)
    except (SafetensorError, OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{path}: not a readable safetensors checkpoint ({exc})") from None


def shape_mismatch(expected: Mapping[str, Tensor], got: Mapping[str, Tensor]) -> str | None:
    """What keeps tensors `got` from fitting `expected` (missing, unexpected keys, first wrong shape), or None."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if tuple(expected[k].shape) != tuple(got[k].shape))
    parts = []
    if missing:
        parts.append(f"missing {missing[:3]}")
    if unexpected:
        parts.append(f"unexpected {unexpected[:3]}")
    if wrong:
        k = wrong[0]
        parts.append(f"shape of {k}: {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}")
    return "; ".join(parts) or None


def dtype_mismatch(expected: Mapping[str, Tensor], got: Mapping[str, Tensor]) -> str | None:
    """The first tensor of `got` whose dtype differs from `expected`'s (load_state_dict would cast it silently:
    float64 rounded, bool made 0/1, a float truncated to int), or None."""
    cast = sorted(k for k in set(expected) & set(got) if expected[k].dtype != got[k].dtype)
    if not cast:
        return None
    k = cast[0]
    have, want = (str(t.dtype).removeprefix("torch.") for t in (got[k], expected[k]))
    return f"dtype of {k}: {have} vs model {want}; save the weights in the model's dtypes"


def load_weights_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model`, requiring exactly matching keys, shapes and dtypes (never strict=False)."""
    expected = model.state_dict()
    problem = shape_mismatch(expected, state) or dtype_mismatch(expected, state)
    if problem:
        raise UserError(f"{source}: weights do not fit the model ({problem})")
    model.load_state_dict(state, strict=True)


# safetensors rejects headers larger than this (100 MB); a bigger length field means the file is something else.
_MAX_SAFETENSORS_HEADER = 100_000_000
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_checkpoint(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a user-supplied checkpoint into a state dict, deciding its format from its content, not its name.

    safetensors is read after checking its header against the file size. A PyTorch pickle (torch.save's zip
    format or a raw pickle) is refused unless `allow_pickle`, and then loaded only with torch.load(weights_only=True).
    Every failure raises UserError with one line naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise UserError(f"{path}: empty file (0 bytes), not a checkpoint")

    header_len = int.from_bytes(head[:8], "little")
    if len(head) == 9 and head[8:9] == b"{" and header_len <= _MAX_SAFETENSORS_HEADER:
        return _read_safetensors(path, size, header_len)
    if head[:4] == b"PK\x03\x04":
        if not _zip_may_be_torch(path):
            raise UserError(f"{path}: not a checkpoint (a zip archive without data.pkl, so not a PyTorch checkpoint)")
        return _read_pickle(path, allow_pickle)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return _read_pickle(path, allow_pickle)
    raise UserError(f"{path}: not a checkpoint (neither safetensors nor a PyTorch pickle)")


def _one_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of `text` without terminal colour codes, cut to `limit` characters."""
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    line = lines[0] if lines else "no reason given"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _read_safetensors(path: Path, size: int, header_len: int) -> dict[str, torch.Tensor]:
    """Check the header of the safetensors file at `path` against its `size`, then load it."""
    if 8 + header_len > size:
        raise UserError(f"{path}: truncated: expected at least {8 + header_len} bytes (header), file has {size}")
    try:
        raw = _read_range(path, 8, header_len)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past the parser's depth
        raise UserError(f"{path}: not a checkpoint (neither safetensors nor a PyTorch pickle)") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a checkpoint (neither safetensors nor a PyTorch pickle)")
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            and offsets[0] <= offsets[1]
        ):
            raise UserError(f"{path}: malformed safetensors header (entry {name!r} has no valid data_offsets)")
        data_end = max(data_end, offsets[1])
    expected = 8 + header_len + data_end
    if expected > size:
        raise UserError(f"{path}: truncated: expected {expected} bytes, file has {size}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        raise UserError(f"{path}: unreadable safetensors checkpoint ({_one_line(str(exc))})") from None


def _read_range(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def _zip_may_be_torch(path: Path) -> bool:
    """False only for a readable zip archive with no data.pkl; a damaged zip may still be a (truncated) torch.save."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return True


def _conversion_target(path: Path) -> Path:
    """A .safetensors path next to `path` that does not exist yet (m.pt -> m.safetensors, else m-2.safetensors...)."""
    base = path.with_name(path.stem + (".converted" if path.suffix == ".safetensors" else "") + ".safetensors")
    out, n = base, 2
    while out.exists() or out.is_symlink():
        out, n = base.with_name(f"{base.stem}-{n}.safetensors"), n + 1
    return out


def _conversion_command(path: Path) -> str:
    """A shell-quoted one-line python -c that converts the pickled state dict at `path` to safetensors next to it;
    it creates its output with open(..., 'xb'), so it fails rather than overwrite a file made in the meantime."""
    out = _conversion_target(path)
    code = (
        "import torch, safetensors.torch as st; "
        f'sd = torch.load(open({json.dumps(str(path))}, "rb"), map_location="cpu", weights_only=True); '
        f'open({json.dumps(str(out))}, "xb").write(st.save({{k: v.detach().clone().contiguous() for k, v in sd.items()}}))'
    )
    return f"python -c {shlex.quote(code)}"


STATE_DICT_ADVICE = ("where the model was trained, save model.state_dict() instead of the model: "
                     "torch.save(model.state_dict(), 'm.pt'), or safetensors.torch.save_file(model.state_dict(), "
                     "'m.safetensors')")
"""What to do with a whole model pickled by torch.save(model), which the weights-only loader cannot read."""
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


SAFE_WEIGHTS_ONLY = (2, 6)
"""The first torch whose torch.load(weights_only=True) cannot be made to run code (CVE-2025-32434 was fixed in 2.6)."""


def _torch_release() -> tuple[int, int]:
    """(major, minor) of the installed torch, from its version string (e.g. '2.14.1+cpu')."""
    found = re.match(r"(\d+)\.(\d+)", str(torch.__version__))
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _read_pickle(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if not allow_pickle:
        raise UserError(
            f"{path}: is a PyTorch pickle file; loading a pickle can run arbitrary code, so unlearn refuses it. "
            f"Convert a pickled state dict once, in a trusted environment: {_conversion_command(path)} "
            "-- or pass --allow-pickle to load it with torch.load(weights_only=True). A whole model saved with "
            f"torch.save(model) is not a state dict: {STATE_DICT_ADVICE}."
        )
    if _torch_release() < SAFE_WEIGHTS_ONLY:
        raise UserError(
            f"{path}: --allow-pickle needs torch >= 2.6; torch {torch.__version__}'s weights-only loader can be made "
            "to run code (CVE-2025-32434). Upgrade torch, or convert the file where you trust it: "
            f"{_conversion_command(path)}"
        )
    try:
        # A file object, not the path: torch.load picks safetensors by a ".safetensors" name; here content decides.
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note about an unusual pickle protocol
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = _UNSUPPORTED_GLOBAL.search(text)
        if found and found.group(1).rsplit(".", 1)[-1][:1].isupper():  # a class, as torch.save(model) pickles
            raise UserError(
                f"{path}: the weights-only loader refused this pickle: it holds an object of class {found.group(1)}, "
                f"not only tensors, as a whole model saved with torch.save(model) does; {STATE_DICT_ADVICE}"
            ) from None
        reason = _one_line(text.split("WeightsUnpickler error:", 1)[-1])
        reason = reason.split(". ", 1)[0].rstrip(".") + "."  # drop torch's advice on allowlisting the global
        raise UserError(f"{path}: the weights-only loader refused this pickle: {reason}") from None
    except Exception as exc:  # truncated zip (RuntimeError), EOFError, ...: any failure reading untrusted bytes
        raise UserError(f"{path}: unreadable PyTorch pickle ({type(exc).__name__}: {_one_line(str(exc))})") from None
    state = _as_state_dict(obj)
    if state is None and isinstance(obj, Mapping):
        present = [k for k in _WRAPPER_KEYS if k in obj]
        if len(present) == 1:
            state = _as_state_dict(obj[present[0]])
    if state is None:
        raise UserError(
            f"{path}: holds no state dict (found {_describe(obj)}); expected a mapping of parameter names to tensors"
        )
    return state


def _as_state_dict(obj: object) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return dict(obj)
    return None


def _describe(obj: object) -> str:
    kind = type(obj).__name__
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str):
                return f"a {kind} with a {type(key).__name__} key"
            if not isinstance(value, torch.Tensor):
                return f"a {kind} whose entry {key!r} is a {type(value).__name__}"
    return f"a {kind}"
