"""torch module → ONNX ModelProto, with torch's ONNX exporter.

The torch.export-based exporter (`dynamo=True`, the default since torch 2.9) is tried
first; only when it fails is the TorchScript exporter (`dynamo=False`, tracing) used,
and the result records which one ran (metadata key `exporter`).

Test hook: with CNNSPEC_TEST_STOP_IN_EXPORT=1 in the environment, the model's first forward
call while the dynamo exporter traces it stops the process with SIGSTOP, so a test can send
SIGINT at exactly that point (tests/export/test_export_interrupt.py); SIGCONT resumes it. Like
atomic.py's hook it writes nothing; unset, it costs one environment lookup per export.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from cnnspec.deploy.metadata import INPUT_NAME, OUTPUT_NAME
from cnnspec.errors import ExportError
from cnnspec.interrupts import Interrupted, ctrl_c, raises_on_ctrl_c

STOP_IN_EXPORT = "CNNSPEC_TEST_STOP_IN_EXPORT"

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
    hook = model.register_forward_pre_hook(_stop_once) if os.environ.get(STOP_IN_EXPORT) == "1" else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.ExitStack() as cleanup:
        if hook is not None:
            cleanup.callback(hook.remove)
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


_stopped: list[int] = []


def _stop_once(module: nn.Module, args: object) -> None:
    """The test hook: SIGSTOP this process the first time the exporter runs the model's forward."""
    if not _stopped:
        _stopped.append(os.getpid())
        os.kill(os.getpid(), signal.SIGSTOP)


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


def _from_interrupt(exc: BaseException) -> bool:
    """Whether `exc` wraps a KeyboardInterrupt (torch.export turns Ctrl-C into a TorchExportError)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


@contextlib.contextmanager
def _noticing_interrupts() -> Iterator[list[int]]:
    """Record every SIGINT while the block runs (and still raise KeyboardInterrupt as Python does), so an
    interrupt the exporters catch, wrap or swallow still stops the export. Main thread only."""
    hits: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield hits
        return
    ctrl_c.deliver_held()  # a Ctrl-C the command line held during an import stops the export before it starts
    previous = signal.getsignal(signal.SIGINT)
    if not raises_on_ctrl_c(previous):  # SIG_IGN, SIG_DFL or someone's handler: leave it
        yield hits
        return

    def noticed(signum: int, frame: object) -> None:
        hits.append(signum)
        raise Interrupted

    signal.signal(signal.SIGINT, noticed)
    try:
        yield hits
    finally:
        signal.signal(signal.SIGINT, previous)


def to_onnx(model: nn.Module, input_shape: tuple[int, ...], opset: int, dynamic_batch: bool = True) -> Exported:
    """Export `model` (put in eval mode) for inputs of shape (N, *input_shape); input `input`, output `logits`.

    Ctrl-C stops it with KeyboardInterrupt, whatever the exporter made of the interrupt: it is
    never taken for an exporter failure (and never a reason to try the other exporter).
    """
    model.eval()
    batch = _TRACE_BATCH if dynamic_batch else 1
    example = torch.rand(batch, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), _noticing_interrupts() as interrupts:
        try:
            proto = _dynamo(model, example, opset, dynamic_batch)
        except Exception as exc:  # the dynamo exporter fails in many ways; the TorchScript one may still work
            if interrupts or _from_interrupt(exc):
                raise KeyboardInterrupt from None
            dynamo_error = _first_line(exc)
        else:
            if interrupts:
                raise KeyboardInterrupt
            return Exported(proto, "dynamo")
        try:
            proto = _torchscript(model, example, opset, dynamic_batch)
        except Exception as exc:
            if interrupts or _from_interrupt(exc):
                raise KeyboardInterrupt from None
            raise ExportError(
                "torch cannot export this model to ONNX",
                hint=f"dynamo exporter: {dynamo_error}; TorchScript exporter: {_first_line(exc)}",
            ) from None
        if interrupts:
            raise KeyboardInterrupt
        return Exported(proto, "torchscript", dynamo_error)
