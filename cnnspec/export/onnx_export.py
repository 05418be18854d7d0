"""torch module → ONNX ModelProto, with torch's ONNX exporter.

The torch.export-based exporter (`dynamo=True`, the default since torch 2.9) is tried
first; only when it fails is the TorchScript exporter (`dynamo=False`, tracing) used,
and the result records which one ran (metadata key `exporter`).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from cnnspec.errors import ExportError
from cnnspec.export.metadata import INPUT_NAME, OUTPUT_NAME

# Example batch for tracing a dynamic batch axis: torch.export specialises sizes 0 and 1.
_TRACE_BATCH = 2


@dataclass
class Exported:
    model: onnx.ModelProto
    exporter: str  # "dynamo" or "torchscript"
    dynamo_error: str | None = None  # why the dynamo exporter was not used


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _dynamo(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> onnx.ModelProto:
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    # The exporter prints progress and warnings on stdout/stderr even when verbose=False in some paths.
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    return program.model_proto


def _torchscript(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> onnx.ModelProto:
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with tempfile.TemporaryDirectory(prefix="cnnspec-export-") as folder:
        path = Path(folder) / "model.onnx"
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes=axes,
            )
        return onnx.load(str(path))


def to_onnx(model: nn.Module, input_shape: tuple[int, ...], opset: int, dynamic_batch: bool = True) -> Exported:
    """Export `model` (put in eval mode) for inputs of shape (N, *input_shape); input `input`, output `logits`."""
    model.eval()
    batch = _TRACE_BATCH if dynamic_batch else 1
    example = torch.rand(batch, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            return Exported(_dynamo(model, example, opset, dynamic_batch), "dynamo")
        except Exception as exc:  # the dynamo exporter fails in many ways; the TorchScript one may still work
            dynamo_error = _first_line(exc)
        try:
            return Exported(_torchscript(model, example, opset, dynamic_batch), "torchscript", dynamo_error)
        except Exception as exc:
            raise ExportError(
                "torch cannot export this model to ONNX",
                hint=f"dynamo exporter: {dynamo_error}; TorchScript exporter: {_first_line(exc)}",
            ) from None
