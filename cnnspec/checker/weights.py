"""Where `model.weights` points, and the static check that the file is there (no torch)."""

from __future__ import annotations

from pathlib import Path

from cnnspec.errors import Diagnostic
from cnnspec.spec.model import Spec

WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")


def weights_file(spec: Spec) -> Path | None:
    """The file `model.weights` names, a relative path resolved against the spec file's folder."""
    if spec.model.weights is None:
        return None
    path = Path(spec.model.weights).expanduser()
    if path.is_absolute():
        return path
    return Path(spec.source.file).parent / path


def check_weights(spec: Spec) -> list[Diagnostic]:
    """A located error when `model.weights` names no file, or one of a kind build cannot read.

    Only `validate` runs this: a run directory's spec.yaml keeps the path as written, and the
    commands that rebuild a run load its checkpoint instead (`build(..., pretrained=False)`).
    """
    path = weights_file(spec)
    if path is None:
        return []
    where = spec.source.locate(("model", "weights"))
    if not path.name.endswith(WEIGHT_SUFFIXES):
        return [
            Diagnostic(
                f"model.weights must be a .pth, .pt or .safetensors file, got '{spec.model.weights}'",
                where,
                hint="save the state_dict with torch.save(model.state_dict(), 'FILE.pth') or safetensors",
            )
        ]
    if not path.is_file():
        return [
            Diagnostic(
                f"model.weights: no file at {path}",
                where,
                hint="a relative path is relative to the spec file's folder",
            )
        ]
    return []
