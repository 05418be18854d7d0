"""torch eager vs onnxruntime: latency and throughput on the same input.

Both engines start from the same host (CPU) array and hand back host logits, so on a
GPU both timings include the copies in and out. On a CPU both get the same number of
threads (torch's `get_num_threads()`), so the ratio compares engines, not thread counts.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnspec.checker.graph import Graph
from cnnspec.deploy.gate import sample_batch
from cnnspec.deploy.metadata import ModelMetadata, ensure_exported_from
from cnnspec.deploy.predict import model_metadata, run_batches
from cnnspec.deploy.session import CudaOptions, Device, IoBound, Session, open_session
from cnnspec.errors import Diagnostic, ExportError, Location
from cnnspec.rundir.info import RunInfo, read_info
from cnnspec.rundir.lock import locked
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.reader import load_trained


@dataclass
class Timing:
    """Latency of one call on a batch, in milliseconds, and the throughput it implies."""

    iterations: int
    median_ms: float
    p90_ms: float

    def images_per_second(self, batch: int) -> float:
        return batch / (self.median_ms / 1e3) if self.median_ms > 0 else float("inf")


@dataclass
class BenchRow:
    batch: int
    torch: Timing
    onnx: Timing

    @property
    def ratio(self) -> float:
        """onnxruntime throughput ÷ torch eager throughput (> 1: onnxruntime is faster)."""
        return self.torch.median_ms / self.onnx.median_ms if self.onnx.median_ms > 0 else float("inf")


@dataclass
class BenchResult:
    name: str
    onnx_path: str
    device: str  # "cpu" or "cuda"
    provider: str
    threads: int
    rows: list[BenchRow]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "onnx": self.onnx_path,
            "device": self.device,
            "provider": self.provider,
            "threads": self.threads,
            "rows": [
                {
                    "batch": r.batch,
                    "torch_eager": {**asdict(r.torch), "images_per_second": r.torch.images_per_second(r.batch)},
                    "onnxruntime": {**asdict(r.onnx), "images_per_second": r.onnx.images_per_second(r.batch)},
                    "ratio": r.ratio,
                }
                for r in self.rows
            ],
            "notes": self.notes,
        }


def time_calls(
    call: Callable[[], object], min_seconds: float = 1.0, min_iters: int = 5, max_iters: int = 200, warmup: int = 3
) -> Timing:
    """Call `call` `warmup` times, then until `min_seconds` and `min_iters` are both reached (or `max_iters`)."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_iters and (len(times) < min_iters or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    median, p90 = np.percentile(np.asarray(times) * 1e3, [50, 90])
    return Timing(len(times), float(median), float(p90))


def bench_pair(
    model: nn.Module,
    session: Session,
    meta: ModelMetadata,
    batches: Sequence[int],
    device: str = "cpu",
    min_seconds: float = 1.0,
    io_binding: bool = False,
) -> list[BenchRow]:
    """Time torch eager (`model` on `device`) and `session` on the same random batches.

    `io_binding`: both engines read an input already on the device and leave the logits there
    (onnxruntime's IOBinding; torch synchronises the GPU), so no host↔device copy is timed."""
    model = model.eval().to(device)
    classes = len(meta.class_names)
    rows = []
    for batch in batches:
        x = sample_batch(meta, batch, seed=batch)
        xt = torch.from_numpy(x)
        resident = xt.to(device)

        def torch_call(xt: torch.Tensor = xt) -> np.ndarray:
            return model(xt.to(device)).cpu().numpy()  # type: ignore[no-any-return]

        def torch_resident(xd: torch.Tensor = resident) -> None:
            model(xd)
            if device == "cuda":
                torch.cuda.synchronize()

        run_batches(session, x, classes, batch_size=len(x))  # stoppable: a graph that never ends stops at Ctrl-C here
        onnx_call: Callable[[], object]
        if io_binding:
            onnx_call = _bound_call(session, x)
        else:

            def onnx_call(x: np.ndarray = x) -> np.ndarray:
                # Timed without Session.run's Ctrl-C guard (a thread a call); the call before the timing has it.
                return run_batches(session, x, classes, batch_size=len(x), stoppable=False)

        with torch.inference_mode():
            torch_timing = time_calls(torch_resident if io_binding else torch_call, min_seconds)
        onnx_timing = time_calls(onnx_call, min_seconds)
        rows.append(BenchRow(batch, torch_timing, onnx_timing))
    return rows


def _bound_call(session: Session, x: np.ndarray) -> Callable[[], object]:
    """onnxruntime on `x` through IOBinding: the input placed on the session's device once (a fixed
    batch axis: its first batch, as `run_batches` would feed it)."""
    step = session.static_batch
    bound = IoBound(session, x if step is None else x[:step])
    return bound.run


@contextmanager
def _onnx_for_run(run: Path, notes: list[str]) -> Iterator[Path]:
    existing = RunPaths(run).onnx
    if existing.is_file():
        yield existing
        return
    from cnnspec.deploy.exporter import export_run

    with tempfile.TemporaryDirectory(prefix="cnnspec-bench-") as folder:
        notes.append(f"{existing} does not exist: exported the run to a temporary file for this benchmark")
        yield export_run(run, Path(folder) / "model.onnx").path


def _torch_for_model(path: Path, meta: ModelMetadata, notes: list[str]) -> tuple[nn.Module, Graph]:
    parent = path.resolve().parent
    if RunPaths(parent).info.is_file() and read_info(parent).spec_hash == meta.spec_hash:
        with locked(parent, "cnnspec bench", shared=True):
            trained = load_trained(parent)
            return trained.model, trained.graph
    if meta.spec is None:
        raise ExportError(
            f"{path} carries no spec to rebuild the torch model from", hint="pass the run directory instead"
        )
    from cnnspec.builder.graph_module import build
    from cnnspec.checker.checker import check
    from cnnspec.spec.load import loads

    graph = check(loads(meta.spec, file=f"{path}:spec"))
    _check_embedded(path, graph, meta)
    notes.append(
        "torch runs the spec embedded in the file with fresh weights (the speed does not depend on their values)"
    )
    return build(graph, pretrained=False).eval(), graph


# What an embedded spec may ask torch to allocate. A single ONNX file holds at most 2 GiB,
# so a spec with more float32 weights than that cannot be the model in the file.
MAX_EMBEDDED_PARAMS = 2**29
MAX_EMBEDDED_ACTIVATIONS = 2**28  # values summed over every layer's output, for one image (1 GiB as float32)


def _check_embedded(path: Path, graph: Graph, meta: ModelMetadata) -> None:
    """The embedded spec describes the file's model and fits the bounds; ExportError before torch allocates."""
    hint = "bench the run directory instead, or a file written by `cnnspec export`"
    if list(graph.input_shape) != list(meta.input_shape) or list(graph.output_shape) != [len(meta.class_names)]:
        raise ExportError(
            f"{path}: the embedded spec takes {list(graph.input_shape)} and returns {list(graph.output_shape)}, "
            f"but the file takes {meta.input_shape} and names {len(meta.class_names)} classes",
            hint=hint,
        )
    for n in graph.nodes:
        weights = getattr(n.layer, "weights", "none")
        if weights != "none":  # a path or a download a file someone sent would have bench read
            raise ExportError(
                f"{path}: the embedded spec's layer '{n.id}' loads weights from {weights!r}; "
                "bench builds embedded specs with fresh weights only",
                hint=hint,
            )
    params = graph.total_params
    activations = sum(math.prod(n.output_shape) for n in graph.nodes)
    if params > MAX_EMBEDDED_PARAMS or activations > MAX_EMBEDDED_ACTIVATIONS:
        raise ExportError(
            f"{path}: refused to build the embedded spec: {params:,} parameters and {activations:,} activation "
            f"values an image; at most {MAX_EMBEDDED_PARAMS:,} and {MAX_EMBEDDED_ACTIVATIONS:,}",
            hint=hint,
        )


def _pick_device(device: Device) -> str:
    if device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise ExportError("torch sees no CUDA device", hint="use --device cpu or auto")
    return "cpu"


# The largest batch and the longest minimum timing bench takes: beyond them a benchmark measures the
# allocator or never ends. A batch within the bound is still refused when it does not fit in memory.
MAX_BATCH = 65_536
MAX_SECONDS = 3_600.0


def check_options(batches: Sequence[int], min_seconds: float, command: str = "bench") -> None:
    """ExportError when a batch size or the minimum timing is out of the range `command` (bench, quantize)
    times, before anything is loaded or allocated."""
    if not batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batches):
        raise ExportError(f"batch sizes must be positive integers, got {list(batches)}")
    if max(batches) > MAX_BATCH:
        raise ExportError(
            Diagnostic(
                f"batch size {max(batches):,} is over the largest {command} runs, {MAX_BATCH:,}",
                notes=("a larger batch times the memory allocator rather than the model, or does not fit in memory",),
                hint=f"--batch takes sizes from 1 to {MAX_BATCH:,}, e.g. 1,64,256",
            )
        )
    if not (0 <= min_seconds <= MAX_SECONDS):  # NaN fails too
        raise ExportError(
            f"--seconds {min_seconds:g} is outside 0 to {MAX_SECONDS:g}",
            hint="the minimum timing per engine and batch size, in seconds (default 1)",
        )


def batch_memory(meta: ModelMetadata, graph: Graph | None, batch: int) -> int:
    """Bytes a batch of `batch` needs while bench times it: the random 8-bit images and the float32
    input (made once, fitted once), and for each engine the forward pass as evaluation counts it (the
    input and the largest layer output, when the spec is known) and the logits."""
    pre = meta.image_preprocessing()
    c = pre.channels
    stored = c * math.prod(pre.image_size)
    values = c * math.prod(pre.input_size)
    largest = max((math.prod(n.output_shape) for n in graph.nodes), default=0) if graph is not None else 0
    per_image = stored + 2 * 4 * values + 2 * 4 * (values + largest + len(meta.class_names))
    return batch * per_image


def ensure_batches_fit(meta: ModelMetadata, graph: Graph | None, batches: Sequence[int], path: Path) -> None:
    """ExportError before anything is allocated when the largest batch does not fit in the CPU's memory."""
    from cnnspec.checker.memory import available_cpu_memory, format_bytes

    batch = max(batches)
    need, free = batch_memory(meta, graph, batch), available_cpu_memory()
    if free is not None and need > free:
        counted = "" if graph is not None else " (its layers' outputs not counted: the file carries no spec)"
        raise ExportError(
            Diagnostic(
                f"a batch of {batch:,} needs an estimated {format_bytes(need)} but the cpu has"
                f" {format_bytes(free)} free",
                Location(str(path)),
                notes=(f"{format_bytes(need // batch)} per image of {'×'.join(map(str, meta.input_shape))}{counted}",),
                hint="lower --batch",
            )
        )


def bench(
    target: str | Path,
    batches: Iterable[int] = (1, 64),
    device: Device = "auto",
    min_seconds: float = 1.0,
    io_binding: bool = False,
    cuda: CudaOptions | None = None,
) -> BenchResult:
    """Benchmark a run directory (its model.onnx, exported on the fly when absent) or an exported .onnx file.

    `io_binding`: inputs placed on the device before the timing, logits left there (bench_pair);
    `cuda`: the CUDA provider's settings (cudnn_conv_algo_search), noted as unused on the CPU.

    Batches go up to MAX_BATCH and must fit in the CPU's memory, `min_seconds` up to MAX_SECONDS;
    ExportError otherwise, before anything is loaded or allocated for the batches."""
    p = Path(target)
    batches = list(batches)
    check_options(batches, min_seconds)
    notes: list[str] = []
    where = _pick_device(device)
    settings = _Settings(io_binding, cuda or CudaOptions())
    threads = torch.get_num_threads()
    if p.is_dir():
        read_info(p)  # a folder that is not a run is refused before its lock file is made
        with locked(p, "cnnspec bench", shared=True):  # not while a `train` changes its weights
            trained = load_trained(p)
            with _onnx_for_run(p, notes) as onnx_path:
                return _bench_files(
                    (trained.model, trained.graph),
                    onnx_path,
                    batches,
                    device,
                    where,
                    threads,
                    min_seconds,
                    notes,
                    settings,
                    run=(p, trained.info),
                )
    if not p.is_file():
        raise ExportError(f"{p} is neither a run directory nor an ONNX file")
    return _bench_files(None, p, batches, device, where, threads, min_seconds, notes, settings)


@dataclass(frozen=True)
class _Settings:
    io_binding: bool
    cuda: CudaOptions


def _bench_files(
    torch_model: tuple[nn.Module, Graph] | None,
    onnx_path: Path,
    batches: list[int],
    requested: Device,
    where: str,
    threads: int,
    min_seconds: float,
    notes: list[str],
    settings: _Settings,
    run: tuple[Path, RunInfo] | None = None,
) -> BenchResult:
    """`run`: the run folder and record when `onnx_path` is its model.onnx, which must be an export of it
    (torch runs the run's weights: timing another network beside them would compare two models)."""
    session: Session | None = None
    if where == "cuda":
        try:
            session = open_session(onnx_path, "cuda", cuda=settings.cuda)
        except ExportError:
            if requested == "cuda":
                raise
            notes.append("torch sees a GPU but onnxruntime's CUDA provider does not work: compared both on the CPU")
            where = "cpu"
    if session is None:
        session = open_session(onnx_path, "cpu", threads=threads)
    meta = model_metadata(session)
    if run is not None:
        root, info = run
        ensure_exported_from(meta, str(onnx_path), str(root), info.spec_hash, info.run_id)
    model, graph = torch_model if torch_model is not None else _torch_for_model(onnx_path, meta, notes)
    ensure_batches_fit(meta, graph, batches, onnx_path)
    if settings.cuda.conv_algo_search is not None and where != "cuda":
        notes.append("cudnn_conv_algo_search applies to the CUDA provider only: unused on the CPU")
    if settings.cuda.conv_algo_search is not None and where == "cuda":
        notes.append(f"cudnn_conv_algo_search {settings.cuda.conv_algo_search}")
    if settings.io_binding:
        notes.append(
            f"IOBinding: inputs placed on the {where.upper()} before the timing and logits left there, for both"
            " engines (no host↔device copy timed)"
        )
    rows = bench_pair(model, session, meta, batches, where, min_seconds, settings.io_binding)
    return BenchResult(meta.spec_name or onnx_path.stem, str(onnx_path), where, session.provider, threads, rows, notes)
