"""Export to ONNX and inference with onnxruntime.

    path = cnnspec.export("runs/digits")              # RUN/model.onnx, after the parity gate
    result = predict("runs/digits/model.onnx", ["img.png"])   # cnnspec.export.predict

This package imports torch only in the modules that export or benchmark (exporter,
onnx_export, gate, bench, runs); metadata, safety, session, images and predict need
onnxruntime, numpy and Pillow alone.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

__all__ = ["export"]


def export(run: str | Path, out: str | Path | None = None) -> Path:
    """Export a trained run directory to ONNX (default RUN/model.onnx) after the parity gate; returns the path.

    Raises ExportError (and writes nothing) when the gate fails, CheckpointError when
    `run` is not a usable run directory.
    """
    from cnnspec.export.exporter import export_run

    return export_run(run, out).path


class _CallableModule(types.ModuleType):
    # Importing any submodule (cnnspec.export.predict, …) binds this package to the name
    # `cnnspec.export`, hiding the lazy `cnnspec.export` function of cnnspec/__init__.py;
    # calling the package therefore does what calling that function does.
    def __call__(self, run: str | Path, out: str | Path | None = None) -> Path:
        return export(run, out)


sys.modules[__name__].__class__ = _CallableModule
