"""Reading state_dict files: safetensors verified against the content hash cnnspec stores in them,
and .pth/.pt files read with torch.load(weights_only=True), so no code in a file runs.

Below the run directory: a run's checkpoints (cnnspec.rundir.weights), `model.weights` and a
torchvision backbone's local weights file are all read with these.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from cnnspec.errors import CheckpointError

HASH_KEY = "cnnspec.sha256"


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """The content hash of a state_dict (names, dtypes, shapes and bytes) stored in a safetensors file's metadata."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # reshape: 0-d buffers
    return h.hexdigest()


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
    if stored is not None and stored != weights_digest(state):
        raise CheckpointError(f"{p} is damaged: its content does not match the hash stored when it was written")
    return state


def weights_metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's metadata (its header only; `read_weights` verifies the content)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise CheckpointError(
            f"{path} is not a readable safetensors file: {exc}", hint="it may be truncated or damaged"
        ) from None


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
            f"{p} cannot be loaded safely: {load_failure(exc)}",
            hint="only plain state_dict files are accepted (torch.load(weights_only=True))",
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p} does not hold a state_dict of tensors")
    return state


def load_failure(exc: Exception) -> str:
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
