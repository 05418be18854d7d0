"""Checkpoints: model weights (safetensors, with a stored hash that catches bit flips), the training
state that resumes a run, and `Checkpoints`, the run's checkpoints/ folder the training loop writes."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnspec.atomic import atomic_write_bytes
from cnnspec.errors import CheckpointError

if TYPE_CHECKING:
    from cnnspec.run import RunInfo, RunPaths
    from cnnspec.training.state import TrainState

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


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a failed write of `path` (a full disk, a read-only or foreign folder) into a CheckpointError.

    Every file of a run is written atomically, so what was there before is unchanged.
    """
    try:
        yield
    except OSError as exc:
        raise CheckpointError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint=f"free disk space or make {Path(path).parent} writable; files are replaced whole, so the ones "
            "already there are intact (a stopped run continues with `cnnspec train --resume RUN`)",
        ) from None


def _write(path: str | Path, data: bytes) -> None:
    """Write a checkpoint atomically; a full disk or a read-only folder is a CheckpointError.

    Serialising to bytes first keeps write failures plain OSErrors (torch.save on a full
    disk says only "unexpected pos 576 vs 534"); the old file stays until the new one is complete.
    """
    with writing(path):
        atomic_write_bytes(path, data)


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state_dict as safetensors, atomically, with a content hash in the metadata."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = dict(metadata or {})
    meta[HASH_KEY] = _digest(state)
    _write(path, save(state, metadata=meta))


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


def save_state(path: str | Path, state: dict) -> None:
    """Write the training state atomically with torch.save, with a hash of its content; it must hold
    only tensors and plain Python values so that `torch.load(weights_only=True)` reads it back
    without running code."""
    buffer = io.BytesIO()
    # torch's zip format has no checksum over tensor bytes: the hash is what catches a bit flip.
    torch.save({**state, STATE_HASH_KEY: _state_digest(state)}, buffer)
    _write(path, buffer.getvalue())


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


def all_finite(model: nn.Module) -> bool:
    """True when every floating-point parameter and buffer is finite (checked before any save)."""
    flags = [torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True  # one device sync, not one per tensor


# --- the run's checkpoints/ folder --------------------------------------------------------------


def main_rng_state() -> dict[str, Any]:
    """torch's CPU and (when present) every CUDA generator's state: the main process's random stream."""
    rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_main_rng(rng: dict[str, Any]) -> None:
    """Continue the random stream `main_rng_state` saved."""
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


class Checkpoints:
    """A run's checkpoints: `last.safetensors`, `best.safetensors` and `last.state.pt` (RUN/checkpoints/).

    The state holds the run's identity (format, spec and architecture hashes), a `TrainState`'s
    fields, a copy of the weights (so it can never disagree with them), the optimizer, the
    GradScaler and the RNG streams; `read` refuses one that belongs to another architecture.
    """

    def __init__(self, paths: RunPaths, info: RunInfo) -> None:
        self.paths = paths
        self.info = info

    def save_best(self, model: nn.Module, epoch: int) -> None:
        save_weights(model, self.paths.weights("best"), {"epoch": str(epoch)})

    def save_last(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        state: TrainState,
        world_size: int,
        rng_ranks: list[Any] | None = None,
        batch_size: int | None = None,
    ) -> None:
        """The weights after `state.epoch` (or mid-epoch, at an interrupt), then the state that resumes them.

        `world_size` and `batch_size` (per process) say what one step of `state.tally.batches` was, so a
        resume with other values continues after the same images."""
        save_weights(model, self.paths.weights("last"), {"epoch": str(state.epoch)})
        stored: dict[str, Any] = {
            "format": STATE_FORMAT,
            "architecture_hash": self.info.architecture_hash,
            "spec_hash": self.info.spec_hash,
            "world_size": world_size,
            **({"batch_size": batch_size} if batch_size is not None else {}),
            **state.to_dict(),
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": main_rng_state(),
        }
        if rng_ranks is not None:  # distributed: every rank's own stream
            stored["rng_ranks"] = rng_ranks
        save_state(self.paths.state, stored)

    def read(self) -> dict[str, Any]:
        """The saved training state, verified: its hash, the weights files' hashes, and the architecture."""
        if not self.paths.state.is_file() and self.paths.weights("last").is_file():
            # Weights without a state: the run trained, but cannot continue. Starting it again in the
            # same folder would replace those weights, so the hint says where more training goes.
            raise CheckpointError(
                f"cannot resume {self.paths.root}: its training state ({self.paths.state.name}) is missing, "
                "though its weights are there",
                hint="evaluate and export still work on these weights; to train more, start a new run with "
                "--out NEW_DIR (training again into this folder replaces them)",
            )
        stored = load_state(self.paths.state)
        # The state carries its own weights, but a damaged best.safetensors would otherwise
        # surface only at the very end (the test run) or in an export: refuse it now.
        for which in ("best", "last"):
            if self.paths.weights(which).is_file():
                read_weights(self.paths.weights(which))
        if stored["architecture_hash"] != self.info.architecture_hash:
            raise CheckpointError(f"{self.paths.state} belongs to a different architecture than {self.paths.spec}")
        return stored

    def load_best(self, model: nn.Module) -> None:
        """The best epoch's weights into `model`, when there is a best.safetensors."""
        if self.paths.weights("best").is_file():
            load_weights(model, self.paths.weights("best"))
