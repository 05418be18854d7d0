"""onnxruntime sessions: the CUDA provider when it is present and works, else the CPU one.

Every file is checked on its protobuf before a session exists (external data that leaves its
folder, control flow: `safety.py`, `control_flow.py`), and every run can be stopped: onnxruntime
holds the calling thread until the graph is done, so Python's Ctrl-C would wait for it; `Session.run`
runs it in a worker thread and sets the run's terminate flag on Ctrl-C (onnxruntime stops before
its next node). Its logging is off (fatal only): what goes wrong comes back as the exception cnnspec
reports, not as a coloured line of onnxruntime's on stderr.

onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU or without
the CUDA libraries; asking for it there logs errors and silently falls back. So the
CUDA provider is tried only when a CUDA device is visible, it must come back as the
session's first provider, and it must run one batch; otherwise the CPU provider is used.
`device="cuda"` always asks onnxruntime for the CUDA provider and refuses a session that came back
without it (onnxruntime's silent fallback to the CPU, onnxruntime#23372) with one error line.
`CudaOptions` carries the CUDA provider's settings (`cudnn_conv_algo_search`) for bench and serve;
`IoBound` runs a session on an input already on its device (IOBinding), outputs left there.
No torch here: predict needs onnxruntime only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from cnnspec.deploy.control_flow import check_no_control_flow
from cnnspec.deploy.safety import check_external_data, load_checked
from cnnspec.errors import Diagnostic, ExportError, Location

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
Device = Literal["auto", "cpu", "cuda"]
QUIET = 4  # onnxruntime's severity "fatal": errors come back as exceptions, not log lines
ConvAlgoSearch = Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"]
CONV_ALGO_SEARCHES: tuple[ConvAlgoSearch, ...] = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


@dataclass(frozen=True)
class CudaOptions:
    """Settings of onnxruntime's CUDA provider; None leaves onnxruntime's default.

    `conv_algo_search`: how cuDNN picks each convolution's algorithm on the first run of a shape:
    EXHAUSTIVE benchmarks them all (onnxruntime's default: the fastest kernels, a slow first call per
    input shape), HEURISTIC asks cuDNN's heuristics (fast start), DEFAULT takes the default algorithm."""

    conv_algo_search: ConvAlgoSearch | None = None

    def provider(self) -> tuple[str, dict[str, str]]:
        """The (name, options) entry of `InferenceSession(providers=[...])`."""
        options: dict[str, str] = {}
        if self.conv_algo_search is not None:
            options["cudnn_conv_algo_search"] = self.conv_algo_search
        return CUDA, options


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

    def run(self, x: np.ndarray, stoppable: bool = True) -> np.ndarray:  # (N, C, H, W) float32 -> (N, classes)
        """The graph's output for `x`. `stoppable`: Ctrl-C stops the run (in a worker thread: a thread start a call);
        bench's timed calls pass False after a stoppable warm-up call on the same input."""
        options = run_options()
        feed = {self.input_name: x}

        def call() -> list[object]:
            return list(self.session.run([self.output_name], feed, options))

        try:
            out = stoppable_call(call, options)[0] if stoppable else call()[0]
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # onnxruntime's own exception types: a graph that fails on this input
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise ExportError(f"onnxruntime cannot run {self.path} on a batch of {list(x.shape)}: {first}") from None
        return np.asarray(out)


def run_options() -> ort.RunOptions:
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = QUIET
    return options


def stoppable_call(call: Callable[[], list[object]], options: ort.RunOptions) -> list[object]:
    """`call()` (one onnxruntime run with `options`) in a worker thread, so that Ctrl-C in the main
    thread sets `options.terminate` and raises KeyboardInterrupt once onnxruntime has let go.

    Off the main thread no signal arrives, so the call runs there directly."""
    if threading.current_thread() is not threading.main_thread():
        return call()
    result: list[list[object]] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # handed to the caller's thread as it is
            failure.append(exc)

    worker = threading.Thread(target=work, name="cnnspec-onnxruntime", daemon=True)
    worker.start()
    try:
        worker.join()  # a lock wait: Ctrl-C interrupts it
    except KeyboardInterrupt:
        options.terminate = True  # onnxruntime checks it before each node (a Loop: each iteration)
        worker.join()
        raise
    if failure:
        raise failure[0]
    return result[0]


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
    options.log_severity_level = QUIET  # no provider chatter or coloured error lines on stderr
    if threads:
        options.intra_op_num_threads = threads
    return options


def _try_cuda(
    path: Path, threads: int | None, probe: np.ndarray, cuda: CudaOptions | None, source: str | bytes
) -> ort.InferenceSession | None:
    """A session on the CUDA provider when a device is visible and the provider works, else None (auto)."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers() or not cuda_device_present():
        return None
    try:
        return _cuda_session(path, threads, probe, cuda or CudaOptions(), source)
    except Exception:  # any failure of the CUDA provider means: use the CPU
        return None


def _cuda_session(
    path: Path, threads: int | None, probe: np.ndarray, cuda: CudaOptions, source: str | bytes
) -> ort.InferenceSession:
    """A session asking for the CUDA provider (then the CPU) on `source` (`model_source`), checked to really
    run on CUDA and to run one batch; ExportError (one line) when onnxruntime fell back to the CPU,
    onnxruntime's exception when the session cannot be made or run."""
    import onnxruntime as ort

    # Load CUDA/cuDNN from the nvidia-* wheels (torch's) when they are not on the library path;
    # best effort: creating the session below decides.
    with contextlib.suppress(Exception):
        ort.preload_dlls()
    ort.set_default_logger_severity(QUIET)  # a failed CUDA provider logs at error level before falling back
    try:
        session = ort.InferenceSession(source, sess_options=_options(threads), providers=[cuda.provider(), CPU])
        require_cuda(session, path)
        options = run_options()
        stoppable_call(lambda: list(session.run(None, {session.get_inputs()[0].name: probe}, options)), options)
        return session
    finally:
        ort.set_default_logger_severity(2)


def require_cuda(session: ort.InferenceSession, path: str | Path) -> None:
    """ExportError (one line) unless `session` runs on the CUDA provider: onnxruntime-gpu creates a session
    asked for CUDA on the CPU alone, without an error, when the GPU or its libraries are missing."""
    providers = list(session.get_providers())
    if providers and providers[0] == CUDA:
        return
    why = "its CUDA or cuDNN libraries did not load" if cuda_device_present() else "no CUDA device is visible"
    raise ExportError(
        Diagnostic(
            f"CUDAExecutionProvider was requested but onnxruntime fell back to {', '.join(providers) or 'none'}"
            f" ({why}); refusing to run on the CPU as if it were the GPU (use --device cpu or auto)",
            Location(str(path)),
        )
    )


def probe_input(model: onnx.ModelProto) -> np.ndarray:
    """A zero batch of the model's input shape (batch 1 where the axis is dynamic)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims]
    return np.zeros(shape, dtype=np.float32)


def model_source(path: Path, model: onnx.ModelProto) -> str | bytes:
    """What onnxruntime opens the model from: its path, or the file's bytes when the path is not valid UTF-8
    (a name such as b'm\\xfe.onnx': onnxruntime's Python binding takes only a str it can encode as UTF-8,
    and refuses one holding Python's stand-ins for undecodable bytes with an internal TypeError).
    ExportError, naming the file, for such a name when the model keeps tensors in external data files
    (onnxruntime finds those beside a path; bytes have none)."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        if check_external_data(model, path):
            raise ExportError(
                f"{os.fsencode(name)!r}: the file name is not valid UTF-8, and the model keeps tensors in"
                " external data files, which onnxruntime opens only beside a UTF-8 path",
                hint="rename the model file to a UTF-8 name (its data files stay where they are)",
            ) from None
        return path.read_bytes()
    return name


def open_session(
    path: str | Path, device: Device = "auto", threads: int | None = None, cuda: CudaOptions | None = None
) -> Session:
    """Check the file's external data and graph, then open it on CUDA (when `device` allows and it works) or
    the CPU. `device="cuda"`: the CUDA provider or an ExportError, never a silent CPU session. `cuda`: the
    CUDA provider's settings (unused on the CPU)."""
    import onnxruntime as ort

    p = Path(path)
    model = load_checked(p)  # refuses external data outside the folder before any session exists
    if not model.graph.input or not model.graph.output:
        raise ExportError(f"{p} has no graph input or output")
    check_no_control_flow(model, p)  # a Loop's trip count is the file's to choose: refused before a session
    source = model_source(p, model)
    if device == "cuda":
        return Session(_strict_cuda(p, threads, probe_input(model), cuda or CudaOptions(), source), CUDA, model, p)
    if device == "auto":
        session = _try_cuda(p, threads, probe_input(model), cuda, source)
        if session is not None:
            return Session(session, CUDA, model, p)
    try:
        session = ort.InferenceSession(source, sess_options=_options(threads), providers=[CPU])
    except Exception as exc:  # onnxruntime raises its own exception types for invalid graphs
        raise ExportError(f"onnxruntime cannot load {p}: {_first_line(exc)}") from None
    return Session(session, CPU, model, p)


def _strict_cuda(
    path: Path, threads: int | None, probe: np.ndarray, cuda: CudaOptions, source: str | bytes
) -> ort.InferenceSession:
    """The CUDA session `--device cuda` asks for, or ExportError saying why there is none."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        raise ExportError(
            f"{path}: CUDAExecutionProvider was requested but this onnxruntime {ort.__version__} has no CUDA"
            " provider (a CPU-only build)",
            hint="install onnxruntime-gpu, or use --device cpu or auto",
        )
    try:
        return _cuda_session(path, threads, probe, cuda, source)
    except ExportError:
        raise
    except Exception as exc:  # the provider loaded but cannot make or run this session
        raise ExportError(f"{path}: the onnxruntime CUDA provider failed: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else repr(exc)


class IoBound:
    """A session bound to one input placed on its device (IOBinding): `run()` reads it there and leaves
    the logits there, so a timing of `run()` holds no host↔device copy; `logits()` copies them back."""

    def __init__(self, session: Session, x: np.ndarray):
        import onnxruntime as ort

        where = "cuda" if session.provider == CUDA else "cpu"
        self.session = session
        self.binding = session.session.io_binding()
        self.input = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x, dtype=np.float32), where, 0)
        self.binding.bind_ortvalue_input(session.input_name, self.input)
        self.binding.bind_output(session.output_name, where, 0)
        self.options = run_options()

    def run(self) -> None:
        self.session.session.run_with_iobinding(self.binding, self.options)

    def logits(self) -> np.ndarray:
        return np.asarray(self.binding.copy_outputs_to_cpu()[0])
