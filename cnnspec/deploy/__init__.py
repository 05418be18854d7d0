"""Export to ONNX and inference with onnxruntime.

    path = cnnspec.export("runs/digits")              # RUN/model.onnx, after the parity gate
    result = predict("runs/digits/model.onnx", ["img.png"])   # cnnspec.deploy.predict

This package imports torch only in the modules that export or benchmark (exporter,
onnx_export, gate, bench, runs); metadata, safety, session, images and predict need
onnxruntime, numpy and Pillow alone.
"""

from __future__ import annotations

from pathlib import Path

from cnnspec.callable_package import make_callable

__all__ = ["export"]


def export(run: str | Path, out: str | Path | None = None) -> Path:
    """Export a trained run directory to ONNX (default RUN/model.onnx) after the parity gate; returns the path.

    Raises ExportError (and writes nothing) when the gate fails, CheckpointError when
    `run` is not a usable run directory.
    """
    from cnnspec.deploy.exporter import export_run

    return export_run(run, out).path


make_callable(__name__, export)
