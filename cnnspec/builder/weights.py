"""Load `model.weights`, a state_dict file, into a built model, strictly."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import nn

from cnnspec.builder.weight_files import read_weights
from cnnspec.checker.weights import MISSING, not_a_file_hint, what_is_at
from cnnspec.errors import CheckpointError, Diagnostic, Location

SHOWN = 5  # keys listed per kind of mismatch
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6: a zip archive
PICKLE_MAGIC = b"\x80"  # a pickle of protocol 2 or later: torch.save's old (non-zip) format, or any pickle
RESAVE_HINT = (
    "re-save the weights where they were made as a plain state_dict, torch.save(model.state_dict(), 'FILE.pth') "
    "(torch's zip format, the default), or as a .safetensors file"
)


def _shape(t: torch.Tensor) -> str:
    return "×".join(str(d) for d in t.shape) or "scalar"


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _first(keys: list[str]) -> str:
    more = f", … ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict in a `model.weights` file: a .safetensors file, or a .pth/.pt file of tensors that
    torch.load(weights_only=True) reads (no code in the file runs). Anything else is a CheckpointError
    that says what the file is: not a regular file (a pipe is never opened), not a torch checkpoint, a
    pickle that holds more than tensors, a checkpoint that wraps the state_dict, non-finite values.
    """
    what = what_is_at(path)
    if what == MISSING:
        raise CheckpointError(f"no weights file at {path}", hint="check the path in `weights:`")
    if what is not None:
        raise CheckpointError(f"{path} is {what}, not a weights file", hint=not_a_file_hint(what))
    state = read_weights(path) if path.suffix == ".safetensors" else _state_dict(_torch_load(path), path)
    bad = [k for k, t in state.items() if (t.is_floating_point() or t.is_complex()) and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(
            f"{path} holds values that are not finite (NaN or ±inf) in {len(bad)} tensor(s): {_first(bad)}",
            hint="the model that saved them diverged, or the file is damaged: use weights saved before that",
        )
    return state


def _torch_load(path: Path) -> object:
    with path.open("rb") as stream:
        head = stream.read(len(ZIP_MAGIC))
    if not head:
        raise CheckpointError(f"{path} is empty, not a torch checkpoint", hint=RESAVE_HINT)
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        raise CheckpointError(
            f"{path} is not a torch checkpoint: it starts with the bytes {head.hex(' ')}, neither a zip archive "
            "(torch.save's format) nor a pickle (its old format)",
            hint=RESAVE_HINT,
        )
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it may not read: said below
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the safe unpickler raises several types
        old = "" if head.startswith(ZIP_MAGIC) else ", in torch's old (non-zip) format or another pickle,"
        raise CheckpointError(
            f"{path} is not a plain tensor file: it holds more than tensors{old} and the safe reader refused "
            f"it ({_refusal(exc)}); nothing in it was run",
            hint=RESAVE_HINT,
        ) from None


def _refusal(exc: Exception) -> str:
    """What torch.load(weights_only=True) refused, in a few words; never torch's advice to load the file
    with weights_only=False, which would run whatever code the file holds."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it asks to call or build {found.group(1)}, which a weights file never needs"
    found = re.search(r"Unsupported operand (\d+)", text)
    if found:
        return f"pickle opcode {int(found.group(1)):#04x} is not one it reads"
    if isinstance(exc, EOFError):
        return "the file ends too early"
    lines = [line for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return lines[0].strip() if lines else type(exc).__name__


def _state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """`loaded` if it is a dict of tensors by name; a checkpoint that holds one (`{'state_dict': …}`) is
    refused with the line that saves the inner dict: loading is strict, so nothing is unwrapped unasked."""
    if not isinstance(loaded, dict):
        raise CheckpointError(
            f"{path} does not hold a state_dict: it holds {type(loaded).__name__!r}, not a dict of tensors by name",
            hint="save it with torch.save(model.state_dict(), 'FILE.pth')",
        )
    inner = [
        k
        for k, v in loaded.items()
        if isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values())
    ]
    if inner:
        key = inner[0]
        raise CheckpointError(
            f"{path} holds a checkpoint, not a state_dict: its entry {key!r} is a dict of "
            f"{len(loaded[key])} tensors"
            + (f", beside {_first([repr(k) for k in loaded if k != key])}" if len(loaded) > 1 else ""),
            hint=f"save the state_dict alone: torch.save(torch.load('{path.name}', weights_only=True)[{key!r}], "
            f"'{path.stem}_state_dict.pth')",
        )
    wrong = next(((k, v) for k, v in loaded.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))), None)
    if wrong is not None:
        key, value = wrong
        raise CheckpointError(
            f"{path} does not hold a state_dict of tensors: its entry {key!r} is {type(value).__name__!r}",
            hint="save it with torch.save(model.state_dict(), 'FILE.pth')",
        )
    return loaded  # type: ignore[return-value]


def load_pretrained(model: nn.Module, path: Path, location: Location | None = None) -> None:
    """Copy the state_dict in `path` into `model`: every key and shape must match, in both directions.

    A mismatch is a CheckpointError naming the first missing keys (in the model, not in the
    file), unexpected keys (in the file, not in the model) and shape differences.
    """
    try:
        state = read_weights_file(path)
    except CheckpointError as exc:
        raise CheckpointError(
            [Diagnostic(f"model.weights: {d.message}", location, d.notes, d.hint) for d in exc.diagnostics]
        ) from None
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        notes = []
        if missing:
            notes.append(f"{len(missing)} missing key(s), in the model but not in the file: {_first(missing)}")
        if unexpected:
            notes.append(f"{len(unexpected)} unexpected key(s), in the file but not in the model: {_first(unexpected)}")
        for k in shapes[:SHOWN]:
            notes.append(f"shape differs: {k}: file {_shape(state[k])}, model {_shape(own[k])}")
        if len(shapes) > SHOWN:
            notes.append(f"… and {len(shapes) - SHOWN} more shape difference(s)")
        raise CheckpointError(
            Diagnostic(
                f"model.weights {path} does not fit the model",
                location,
                tuple(notes),
                "the state_dict keys are the layers' dotted ids: name the layers as the file's model does "
                "(compare `cnnspec summary` with the file's keys)",
            )
        )
    # load_state_dict copies with Tensor.copy_, which casts any dtype: an int64, bool or complex tensor
    # would become float weights without a word (complex drops its imaginary part). Floating point of
    # another width (half, bfloat16, float64) is a plain cast and loads, as torch's own loading does.
    kinds = [k for k in own if own[k].is_floating_point() and not state[k].is_floating_point()]
    if kinds:
        listed = [f"{k} ({_dtype(state[k])}, model {_dtype(own[k])})" for k in kinds]
        raise CheckpointError(
            Diagnostic(
                f"model.weights: {path} holds {len(kinds)} tensor(s) that are not floating point where the "
                f"model's are: {_first(listed)}",
                location,
                hint="these are not the weights of a model like this one: if they are, save them as floating "
                "point (tensor.float()); integer buffers such as num_batches_tracked stay integers",
            )
        )
    model.load_state_dict(state, strict=True)
