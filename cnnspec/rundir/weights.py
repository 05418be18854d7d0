"""A run's weight files (safetensors, with a stored hash that catches bit flips) and its training state
(last.state.pt, which resumes a run); `training.checkpoint.Checkpoints` decides when each is written.
The file readers themselves (`read_weights`, the hash) are cnnspec.builder.weight_files', which
`model.weights` and a backbone's local file are read with too."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnspec.builder.weight_files import HASH_KEY, load_failure, read_weights, weights_digest
from cnnspec.errors import CheckpointError
from cnnspec.rundir.files import write_file


def save_weights(
    model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None, *, run: Path | None = None
) -> None:
    """Write the model's state_dict as safetensors, atomically, with a content hash in the metadata
    (`run`: the run folder the file belongs to, whose rule for its own files it is checked by)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = dict(metadata or {})
    meta[HASH_KEY] = weights_digest(state)
    write_file(path, save(state, metadata=meta), run=run)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load safetensors weights into `model`, refusing files that do not fit it."""
    state = read_weights(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        raise CheckpointError(f"{path} does not fit this model: {first}") from None


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
        raise CheckpointError(f"{p} cannot be read: {load_failure(exc)}") from None
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
