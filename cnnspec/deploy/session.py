"""onnxruntime sessions: the CUDA provider when it is present and works, else the CPU one.

onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU or without
the CUDA libraries; asking for it there logs errors and silently falls back. So the
CUDA provider is tried only when a CUDA device is visible, it must come back as the
session's first provider, and it must run one batch; otherwise the CPU provider is used.
No torch here: predict needs onnxruntime only.
"""

from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from cnnspec.deploy.safety import load_checked
from cnnspec.errors import ExportError

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
Device = Literal["auto", "cpu", "cuda"]


@dataclass
class Session:
    """An onnxruntime session with the provider that actually runs it."""

    session: ort.InferenceSession
    provider: str
    model: onnx.ModelProto  # graph and metadata (external data not loaded)
    path: Path

    @property
    def input_name(self) -> str:
        return str(self.session.get_inputs()[0].name)

    @property
    def output_name(self) -> str:
        return str(self.session.get_outputs()[0].name)

    @property
    def static_batch(self) -> int | None:
        """The fixed batch size of the input, or None when the batch axis is dynamic."""
        dim = self.session.get_inputs()[0].shape[0]
        return dim if isinstance(dim, int) and dim > 0 else None

    def run(self, x: np.ndarray) -> np.ndarray:  # (N, C, H, W) float32 -> (N, classes)
        try:
            out = self.session.run([self.output_name], {self.input_name: x})[0]
        except Exception as exc:  # onnxruntime's own exception types: a graph that fails on this input
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise ExportError(f"onnxruntime cannot run {self.path} on a batch of {list(x.shape)}: {first}") from None
        return np.asarray(out)


def cuda_device_present() -> bool:
    """Whether the CUDA driver sees a GPU (without importing torch or touching onnxruntime)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        try:
            lib = ctypes.CDLL("nvcuda.dll")
        except OSError:
            return False
    count = ctypes.c_int(0)
    try:
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return False
    except AttributeError:
        return False
    return count.value > 0


def _options(threads: int | None) -> ort.SessionOptions:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no provider chatter on stderr
    if threads:
        options.intra_op_num_threads = threads
    return options


def _try_cuda(path: Path, threads: int | None, probe: np.ndarray) -> ort.InferenceSession | None:
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers() or not cuda_device_present():
        return None
    # Load CUDA/cuDNN from the nvidia-* wheels (torch's) when they are not on the library path;
    # best effort: creating the session below decides.
    with contextlib.suppress(Exception):
        ort.preload_dlls()
    ort.set_default_logger_severity(4)  # a failed CUDA provider logs at error level before falling back
    try:
        session = ort.InferenceSession(str(path), sess_options=_options(threads), providers=[CUDA, CPU])
        if session.get_providers()[0] != CUDA:
            return None
        session.run(None, {session.get_inputs()[0].name: probe})
        return session
    except Exception:  # any failure of the CUDA provider means: use the CPU
        return None
    finally:
        ort.set_default_logger_severity(2)


def probe_input(model: onnx.ModelProto) -> np.ndarray:
    """A zero batch of the model's input shape (batch 1 where the axis is dynamic)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims]
    return np.zeros(shape, dtype=np.float32)


def open_session(path: str | Path, device: Device = "auto", threads: int | None = None) -> Session:
    """Check the file's external data, then open it on CUDA (when `device` allows and it works) or the CPU."""
    import onnxruntime as ort

    p = Path(path)
    model = load_checked(p)  # refuses external data outside the folder before any session exists
    if not model.graph.input or not model.graph.output:
        raise ExportError(f"{p} has no graph input or output")
    if device in ("auto", "cuda"):
        session = _try_cuda(p, threads, probe_input(model))
        if session is not None:
            return Session(session, CUDA, model, p)
        if device == "cuda":
            raise ExportError(
                "the onnxruntime CUDA provider is not usable here",
                hint="it needs an NVIDIA GPU, CUDA and cuDNN matching onnxruntime-gpu; use --device cpu or auto",
            )
    try:
        session = ort.InferenceSession(str(p), sess_options=_options(threads), providers=[CPU])
    except Exception as exc:  # onnxruntime raises its own exception types for invalid graphs
        raise ExportError(f"onnxruntime cannot load {p}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    return Session(session, CPU, model, p)
