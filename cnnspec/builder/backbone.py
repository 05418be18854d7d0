"""torchvision backbones with their classifier cut off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cnnspec.builder.weight_files import load_state_dict_file
from cnnspec.errors import CheckpointError, SpecError
from cnnspec.layers.backbone import WEIGHT_FILE_SUFFIXES


def build_backbone(name: str, weights: str, freeze: bool, classifier: str) -> nn.Module:
    """A torchvision model with `classifier` replaced by Identity, weights loaded, optionally frozen.

    `weights` is 'none' (random init), a local .pth/.pt/.safetensors state_dict (relative
    paths are relative to the working directory: a spec's are made absolute against its folder when it
    is loaded for use, cnnspec.spec.paths), or a torchvision weights name
    (DEFAULT, IMAGENET1K_V1, …) that torch.hub reads from its cache or downloads.
    Like PyTorch's `requires_grad = False` recipe, `freeze` stops gradients but leaves
    batch-norm statistics updating in train mode.
    """
    import torchvision.models as tvm

    if weights.endswith(WEIGHT_FILE_SUFFIXES):
        model = tvm.get_model(name, weights=None)
        _load_file(model, Path(weights), name, classifier)
    elif weights.lower() == "none":
        model = tvm.get_model(name, weights=None)
    else:
        entry = _weights_enum(name, weights)
        try:
            model = tvm.get_model(name, weights=entry)  # torch.hub cache, else a download
        except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash is a RuntimeError
            filename = entry.url.rsplit("/", 1)[-1]
            raise CheckpointError(
                f"cannot download the torchvision weights {entry} for {name}: {exc}",
                hint=f"without network, download {entry.url} elsewhere and set `weights: path/to/{filename}` "
                f"(a local file), or put the file in the torch hub cache ({_hub_dir()}/checkpoints)",
            ) from None

    parent: nn.Module = model
    *parents, last = classifier.split(".")
    for part in parents:
        parent = getattr(parent, part)
    setattr(parent, last, nn.Identity())
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    return model


def _weights_enum(name: str, weights: str) -> Any:
    """The torchvision weights entry named `weights` (DEFAULT or an enum member name)."""
    import torchvision.models as tvm

    options = tvm.get_model_weights(name)
    try:
        entry = options.DEFAULT if weights == "DEFAULT" else options[weights]
    except KeyError:
        names = ", ".join(["DEFAULT", *(w.name for w in options)])
        raise SpecError(
            f"torchvision has no weights '{weights}' for {name}",
            hint=f"choose one of: {names}, none, or a local .pth/.safetensors file",
        ) from None
    return entry


def _load_file(model: nn.Module, file: Path, name: str, classifier: str) -> None:
    """Load a state_dict file into `model`; the file may hold the full model or the cut backbone."""
    head = classifier + "."
    # The classifier is cut off anyway: drop its keys, so a head trained for other classes still loads.
    state = {k: v for k, v in load_state_dict_file(file).items() if not k.startswith(head)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise CheckpointError(f"{file} does not hold {name} weights: {detail}") from None
    wrong = sorted(k for k in missing if not k.startswith(head)) + sorted(unexpected)
    if wrong:
        raise CheckpointError(
            f"{file} does not hold {name} weights: {len(wrong)} keys do not match (e.g. {wrong[0]})",
            hint=f"save it with torch.save(torchvision.models.{name}().state_dict(), PATH)",
        )


def _hub_dir() -> str:
    import torch

    return str(torch.hub.get_dir())
