"""torchvision backbones with their classifier cut off."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from cnnspec.errors import CheckpointError, SpecError


def build_backbone(name: str, weights: str, freeze: bool, classifier: str) -> nn.Module:
    """A torchvision model with `classifier` replaced by Identity, weights loaded, optionally frozen."""
    import torchvision.models as tvm

    file: Path | None = None
    weights_enum = None
    if weights.endswith((".pth", ".pt", ".safetensors")):
        file = Path(weights)
    elif weights.lower() != "none":
        try:
            weights_enum = tvm.get_model_weights(name)[weights] if weights != "DEFAULT" else tvm.get_model_weights(name).DEFAULT
        except KeyError:
            options = ", ".join(["DEFAULT", *(w.name for w in tvm.get_model_weights(name))])
            raise SpecError(f"torchvision has no weights '{weights}' for {name}", hint=f"choose one of: {options}, none, or a local file") from None
    if weights_enum is not None:
        try:
            model = tvm.get_model(name, weights=weights_enum)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise CheckpointError(
                f"cannot download the {weights_enum} weights for {name}: {exc}",
                hint=f"download them elsewhere and set `weights:` to the local .pth file, or put them in the torch hub cache "
                f"({_hub_dir()}/checkpoints)",
            ) from None
    else:
        model = tvm.get_model(name, weights=None)
    if file is not None:
        from cnnspec.train.checkpoint import load_state_dict_file

        state = load_state_dict_file(file)
        # The file may hold the full model (with its classifier) or the cut backbone.
        missing, unexpected = model.load_state_dict(state, strict=False)
        classifier_keys = {k for k in unexpected if k.startswith(classifier.split(".")[0])}
        wrong = [k for k in missing if not k.startswith(classifier.split(".")[0])] + sorted(set(unexpected) - classifier_keys)
        if wrong:
            raise CheckpointError(f"{file} does not hold {name} weights: {len(wrong)} keys do not match (e.g. {wrong[0]})")
    parent: nn.Module = model
    *parents, last = classifier.split(".")
    for part in parents:
        parent = getattr(parent, part)
    setattr(parent, last, nn.Identity())
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    return model


def _hub_dir() -> str:
    import torch

    return str(torch.hub.get_dir())
