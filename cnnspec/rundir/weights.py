"""A run's weight files (safetensors, with a stored hash that catches bit flips) and its training state
(last.state.pt, which resumes a run); `training.checkpoint.Checkpoints` decides when each is written."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnspec.errors import CheckpointError
from cnnspec.rundir.files import write_file

HASH_KEY = "cnnspec.sha256"


def _digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # reshape: 0-d buffers
    return h.hexdigest()


def save_weights(
    model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None, *, run: Path | None = None
) -> None:
    """Write the model's state_dict as safetensors, atomically, with a content hash in the metadata
    (`run`: the run folder the file belongs to, whose rule for its own files it is checked by)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = dict(metadata or {})
    meta[HASH_KEY] = _digest(state)
    write_file(path, save(state, metadata=meta), run=run)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors state_dict and verify its stored hash."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no weights file at {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(p))
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise CheckpointError(
            f"{p} is not a readable safetensors file: {exc}", hint="it may be truncated or damaged"
        ) from None
    stored = meta.get(HASH_KEY)
    if stored is not None and stored != _digest(state):
        raise CheckpointError(f"{p} is damaged: its content does not match the hash stored when it was written")
    return state


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load safetensors weights into `model`, refusing files that do not fit it."""
    state = read_weights(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        raise CheckpointError(f"{path} does not fit this model: {first}") from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors or a .pth/.pt file (read with weights_only=True: no code runs)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no weights file at {p}", hint="check the path in `weights:`")
    if p.suffix == ".safetensors":
        return read_weights(p)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(
            f"{p} cannot be loaded safely: {_load_failure(exc)}",
            hint="only plain state_dict files are accepted (torch.load(weights_only=True))",
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p} does not hold a state_dict of tensors")
    return state


def _load_failure(exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in one line.

    torch's first line advises `weights_only=False`, which is exactly what must not be done
    with a file from elsewhere; the line that names the refused global says what happened.
    """
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"refused: it asks to call or build {found.group(1)}, which a weights file never needs "
            "(unpickling it could run code; nothing was run)"
        )
    return text.splitlines()[0] if text else type(exc).__name__


# --- training state (resume) ----------------------------------------------------------

STATE_FORMAT = 1
STATE_HASH_KEY = "sha256"


def _hash_value(value: Any, h: Any) -> None:
    """Feed a training state (tensors, dicts, lists and plain values) into a hash, in a fixed order."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _hash_value(value[key], h)
    elif isinstance(value, list | tuple):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _hash_value(item, h)
    else:
        h.update(f"V{value!r}".encode())


def _state_digest(state: dict) -> str:
    h = hashlib.sha256()
    _hash_value({k: v for k, v in state.items() if k != STATE_HASH_KEY}, h)
    return h.hexdigest()


def save_state(path: str | Path, state: dict, *, run: Path | None = None) -> None:
    """Write the training state atomically with torch.save, with a hash of its content; it must hold
    only tensors and plain Python values so that `torch.load(weights_only=True)` reads it back
    without running code."""
    buffer = io.BytesIO()
    # torch's zip format has no checksum over tensor bytes: the hash is what catches a bit flip.
    torch.save({**state, STATE_HASH_KEY: _state_digest(state)}, buffer)
    write_file(path, buffer.getvalue(), run=run)


def load_state(path: str | Path) -> dict:
    """Read a training state written by `save_state` (weights_only: no code runs)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no training state at {p}", hint="the run has not finished an epoch yet: start it again")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"{p} cannot be read: {_load_failure(exc)}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{p} is not a cnnspec training state (format {STATE_FORMAT})")
    # save_state always stores the hash: a state without one was altered (a bit flip in the key's
    # name is enough), so it is refused, not trusted unchecked.
    stored = state.pop(STATE_HASH_KEY, None)
    if stored != _state_digest(state):
        raise CheckpointError(
            f"{p} is damaged: its content does not match the hash stored when it was written",
            hint="resuming from it would continue from altered weights; start the run again "
            "(best.safetensors and last.safetensors carry their own hashes: export them if they verify)",
        )
    return state
