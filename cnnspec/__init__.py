"""cnnspec: a declarative model-spec compiler and runner for convolutional networks.

    spec = cnnspec.load("specs/small_cnn.yaml")   # YAML → validated Spec (no torch)
    graph = cnnspec.check(spec)                    # shapes, params, MACs, receptive field (no torch)
    model = cnnspec.build(spec)                    # torch.nn.Module
    run = cnnspec.train(spec, out="runs/small")    # trains; returns the run directory
    onnx_path = cnnspec.export(run)                # ONNX + parity gate

Torch is imported only by build, train and export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cnnspec.checker.checker import check
from cnnspec.errors import (
    CheckpointError,
    CnnspecError,
    DataError,
    ExportError,
    PluginError,
    ShapeError,
    SpecError,
    TrainingError,
)
from cnnspec.spec.load import load, loads

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cnnspec.builder import build
    from cnnspec.deploy import export
    from cnnspec.training import train

__all__ = [
    "CheckpointError",
    "CnnspecError",
    "DataError",
    "ExportError",
    "PluginError",
    "ShapeError",
    "SpecError",
    "TrainingError",
    "__version__",
    "build",
    "check",
    "export",
    "load",
    "loads",
    "train",
]


def __getattr__(name: str) -> Any:
    # build, train and export need torch: import them only when asked for.
    if name == "build":
        from cnnspec.builder import build

        return build
    if name == "train":
        from cnnspec.training import train

        return train
    if name == "export":
        from cnnspec.deploy import export

        return export
    raise AttributeError(name)
