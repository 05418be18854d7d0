"""Load `model.weights`, a state_dict file, into a built model, strictly."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnspec.errors import CheckpointError, Diagnostic, Location

SHOWN = 5  # keys listed per kind of mismatch


def _shape(t: torch.Tensor) -> str:
    return "×".join(str(d) for d in t.shape) or "scalar"


def _first(keys: list[str]) -> str:
    more = f", … ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def load_pretrained(model: nn.Module, path: Path, location: Location | None = None) -> None:
    """Copy the state_dict in `path` into `model`: every key and shape must match, in both directions.

    A mismatch is a CheckpointError naming the first missing keys (in the model, not in the
    file), unexpected keys (in the file, not in the model) and shape differences.
    """
    from cnnspec.training.checkpoint import load_state_dict_file

    try:
        state = load_state_dict_file(path)
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
    model.load_state_dict(state, strict=True)
