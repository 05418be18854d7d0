"""Model weights on disk: safetensors only, with a stored hash that catches bit flips."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from cnnspec.atomic import atomic_write_with
from cnnspec.errors import CheckpointError

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


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state_dict as safetensors, atomically, with a content hash in the metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = dict(metadata or {})
    meta[HASH_KEY] = _digest(state)
    atomic_write_with(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


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
            f"{p} cannot be loaded safely: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="only plain state_dict files are accepted (torch.load(weights_only=True))",
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p} does not hold a state_dict of tensors")
    return state


# --- training state (resume) ----------------------------------------------------------

STATE_FORMAT = 1


def save_state(path: str | Path, state: dict) -> None:
    """Write the training state atomically with torch.save; it must hold only tensors and plain
    Python values so that `torch.load(weights_only=True)` reads it back without running code."""
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict:
    """Read a training state written by `save_state` (weights_only: no code runs)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no training state at {p}", hint="the run has not finished an epoch yet: start it again")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(
            f"{p} cannot be read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{p} is not a cnnspec training state (format {STATE_FORMAT})")
    return state


def all_finite(model: nn.Module) -> bool:
    """True when every floating-point parameter and buffer is finite (checked before any save)."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())
