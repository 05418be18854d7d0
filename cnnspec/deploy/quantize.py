"""Static INT8 (QDQ) quantization of an exported run, measured before it is kept.

1. The run's `model.onnx` (exported first when the run has none) is prepared with onnxruntime's
   `quant_pre_process` (shape inference and graph optimisation; skipped with a note when it fails);
2. `quantize_static` writes QDQ nodes (int8 activations and weights, per-channel weights, MinMax
   ranges) calibrated on N training images, drawn by the run's seed and brought to the model's
   input by the preprocessing the file records, `Preprocessing.prepare` (the function predict uses);
3. both models classify the run's test split (accuracy, and how often they agree) and are timed on
   the same random batches (as bench makes them), with the same number of threads;
4. the INT8 file is written, atomically, only when its accuracy is at most `max_drop` points below
   fp32's; it carries the fp32 file's metadata, `weights_dtype` "int8" and `quantization` (the
   settings and the figures). When INT8 is not faster, `verdict` says so and why where it can tell:
   the CPU's int8 instructions (VNNI, AMX in /proc/cpuinfo) and the model's size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from cnnspec.atomic import atomic_path
from cnnspec.deploy.bench import Timing, check_options, ensure_batches_fit, time_calls
from cnnspec.deploy.exporter import check_target, export_run, inside_run
from cnnspec.deploy.gate import sample_batch
from cnnspec.deploy.metadata import ModelMetadata, attach, ensure_exported_from
from cnnspec.deploy.predict import model_metadata, run_batches
from cnnspec.deploy.session import Session, open_session
from cnnspec.errors import DataError, ExportError
from cnnspec.rundir.info import read_info
from cnnspec.rundir.lock import locked
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.reader import open_run

DEFAULT_CALIBRATION = 256  # training images; onnxruntime's examples calibrate on a few hundred
MAX_CALIBRATION = 100_000
DEFAULT_MAX_DROP = 1.0  # accuracy points (percent) INT8 may lose against fp32
BATCHES = (1, 64)
INT8_NAME = "model.int8.onnx"
CALIBRATION_BATCH = 32
EVAL_BATCH = 256
# INT8 counts as faster from this throughput ratio on: below it the difference is within timing noise.
FASTER = 1.1
# Below this many multiply-accumulates a batch, the Quantize/DequantizeLinear steps and onnxruntime's
# per-call overhead weigh as much as the int8 arithmetic they save.
SMALL_MACS = 50_000_000
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


@dataclass
class SpeedRow:
    batch: int
    fp32: Timing
    int8: Timing

    @property
    def speedup(self) -> float:
        """INT8 throughput ÷ fp32 throughput (> 1: INT8 is faster)."""
        return self.fp32.median_ms / self.int8.median_ms if self.int8.median_ms > 0 else float("inf")


@dataclass
class CpuInfo:
    name: str
    flags: list[str]  # the int8 instruction sets among INT8_FLAGS this CPU reports

    @property
    def has_int8_dot(self) -> bool:
        return bool(self.flags)


@dataclass
class QuantizeReport:
    run: Path
    fp32_path: Path
    path: Path  # where the INT8 file is (or would have been) written
    written: bool
    max_drop: float
    settings: dict[str, Any]
    test_images: int
    fp32_accuracy: float
    int8_accuracy: float
    agreement: float  # share of test images both models give the same class
    speed: list[SpeedRow]
    threads: int
    cpu: CpuInfo
    macs: int  # multiply-accumulates of one image
    fp32_bytes: int
    int8_bytes: int
    verdict: list[str] = field(default_factory=list)  # whether INT8 is faster, and why not where known
    notes: list[str] = field(default_factory=list)

    @property
    def drop(self) -> float:
        """Accuracy points INT8 loses against fp32 (negative: it gains)."""
        return 100.0 * (self.fp32_accuracy - self.int8_accuracy)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": str(self.run),
            "fp32": str(self.fp32_path),
            "int8": str(self.path),
            "written": self.written,
            "max_drop": self.max_drop,
            "accuracy_drop": self.drop,
            "test_images": self.test_images,
            "fp32_accuracy": self.fp32_accuracy,
            "int8_accuracy": self.int8_accuracy,
            "agreement": self.agreement,
            "fp32_bytes": self.fp32_bytes,
            "int8_bytes": self.int8_bytes,
            "settings": self.settings,
            "threads": self.threads,
            "cpu": {"name": self.cpu.name, "int8_flags": self.cpu.flags},
            "macs": self.macs,
            "speed": [
                {
                    "batch": r.batch,
                    "fp32": {**_timing_json(r.fp32, r.batch)},
                    "int8": {**_timing_json(r.int8, r.batch)},
                    "speedup": r.speedup,
                }
                for r in self.speed
            ],
            "verdict": self.verdict,
            "notes": self.notes,
        }


def _timing_json(t: Timing, batch: int) -> dict[str, float | int]:
    return {"iterations": t.iterations, "median_ms": t.median_ms, "p90_ms": t.p90_ms,
            "images_per_second": t.images_per_second(batch)}  # fmt: skip


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """The CPU's model name and the int8 dot-product instruction sets it reports (empty where unknown)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return CpuInfo("unknown CPU", [])
    name, flags = "unknown CPU", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown CPU":
            name = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return CpuInfo(name, [f for f in INT8_FLAGS if f in flags])


def _x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


class _Calibration:
    """onnxruntime's CalibrationDataReader over prepared batches (get_next: a feed, then None)."""

    def __init__(self, name: str, batches: Iterator[np.ndarray]):
        self.name, self.batches = name, batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.name: batch}


def _calibration_reader(name: str, batches: Iterator[np.ndarray]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_Calibration, CalibrationDataReader):  # type: ignore[misc]
        pass

    return Reader(name, batches)


def _prepared(source: Any, indices: torch.Tensor, meta: ModelMetadata, batch: int) -> Iterator[np.ndarray]:
    """The images of `source` at `indices`, batch by batch, as the model's input (the file's preprocessing)."""
    pre = meta.image_preprocessing()
    for images, _ in source.batches(indices, batch, torch.device("cpu")):
        yield pre.prepare(images.numpy())


def _quantize(
    fp32: Path, out: Path, meta: ModelMetadata, source: Any, n: int, seed: int, notes: list[str]
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Write the QDQ model of `fp32` to `out`; the model read back and the settings used (for the metadata)."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # uint8 activations and int8 weights (U8S8): onnxruntime's fast int8 kernels on x86. Measured on this
    # project's Xeon (VNNI, AMX), ResNet-18 at 3×32×32, batch 1: U8S8 per-channel 0.64 ms against fp32's 0.78,
    # S8S8 per-channel 14 ms (no fused kernel: it runs dequantized). Without VNNI, x86's u8·s8 instruction
    # (vpmaddubsw) can saturate: weights then use 7 bits (reduce_range), as onnxruntime advises.
    reduce_range = _x86() and not cpu_info().has_int8_dot
    prepared = out.with_name("prepared.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared))
        model_in, pre = prepared, True
    except Exception as exc:  # onnxruntime's tools raise anything; quantizing the file as it is still works
        notes.append(f"quant_pre_process failed ({str(exc).splitlines()[0] if str(exc) else exc!r}): skipped")
        model_in, pre = fp32, False
    order = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    graph_input = onnx.load(str(fp32), load_external_data=False).graph.input[0]
    dim = graph_input.type.tensor_type.shape.dim[0]
    static = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None  # a fixed batch axis
    reader = _calibration_reader(graph_input.name, _prepared(source, order, meta, static or CALIBRATION_BATCH))
    quantize_static(
        str(model_in),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    quantized = onnx.load(str(out))
    dequantized = {o for node in quantized.graph.node if node.op_type == "DequantizeLinear" for o in node.output}
    ops = sorted(
        {
            node.op_type
            for node in quantized.graph.node
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and dequantized.intersection(node.input)
        }
    )
    return quantized, {
        "format": "QDQ",
        "method": "MinMax",
        "calibration_images": len(order),
        "calibration_split": "train",
        "per_channel": True,
        "activation_type": "uint8",
        "weight_type": "int8",
        "reduce_range": reduce_range,
        "ops": ops,
        "pre_process": pre,
        "onnxruntime": onnxruntime.__version__,
    }


def _classes(session: Session, x: np.ndarray, classes: int) -> np.ndarray:
    return run_batches(session, x, classes, batch_size=EVAL_BATCH).argmax(axis=1)  # type: ignore[no-any-return]


def _accuracy(fp32: Session, int8: Session, source: Any, meta: ModelMetadata) -> tuple[int, float, float, float]:
    """(images, fp32 accuracy, INT8 accuracy, agreement) on `source` (the test split)."""
    pre = meta.image_preprocessing()
    right32 = right8 = same = total = 0
    for images, labels in source.batches(None, EVAL_BATCH, torch.device("cpu")):
        x = pre.prepare(images.numpy())
        y = labels.numpy()
        a, b = _classes(fp32, x, len(meta.class_names)), _classes(int8, x, len(meta.class_names))
        right32 += int((a == y).sum())
        right8 += int((b == y).sum())
        same += int((a == b).sum())
        total += len(y)
    if total == 0:
        raise DataError("the run's test split holds no images: there is nothing to measure INT8's accuracy on")
    return total, right32 / total, right8 / total, same / total


def _speed(fp32: Session, int8: Session, meta: ModelMetadata, batches: Sequence[int], seconds: float) -> list[SpeedRow]:
    rows = []
    classes = len(meta.class_names)
    for batch in batches:
        x = sample_batch(meta, batch, seed=batch)
        timings = []
        for session in (fp32, int8):
            run_batches(session, x, classes, batch_size=batch)  # stoppable first call: Ctrl-C stops a graph here

            def call(s: Session = session, x: np.ndarray = x, batch: int = batch) -> np.ndarray:
                return run_batches(s, x, classes, batch_size=batch, stoppable=False)

            timings.append(time_calls(call, seconds))
        rows.append(SpeedRow(batch, timings[0], timings[1]))
    return rows


def verdict(rows: Sequence[SpeedRow], cpu: CpuInfo, macs: int) -> list[str]:
    """Lines saying where INT8 is faster and, where it is not, why where it can be told."""
    lines = []
    for r in rows:
        if r.speedup >= FASTER:
            lines.append(f"batch {r.batch}: INT8 is {r.speedup:.2f}× as fast as fp32")
            continue
        why = []
        if not cpu.has_int8_dot:
            why.append(
                "this CPU reports no int8 dot-product instructions (none of "
                f"{', '.join(INT8_FLAGS)} in /proc/cpuinfo), so int8 arithmetic is no faster than fp32"
            )
        if macs * r.batch < SMALL_MACS:
            why.append(
                f"the model is small ({macs * r.batch / 1e6:.2g} M multiply-accumulates a batch): the"
                " Quantize/DequantizeLinear steps and the per-call overhead outweigh the int8 arithmetic"
            )
        reason = "; ".join(why) if why else "cnnspec cannot tell why"
        lines.append(f"batch {r.batch}: INT8 is not faster than fp32 on this CPU ({r.speedup:.2f}×): {reason}")
    return lines


def quantize_run(
    run: str | Path,
    calibration: int = DEFAULT_CALIBRATION,
    max_drop: float = DEFAULT_MAX_DROP,
    out: str | Path | None = None,
    batches: Sequence[int] = BATCHES,
    seconds: float = 1.0,
) -> QuantizeReport:
    """Quantize the run's model.onnx to static INT8, measure both, and write the INT8 file (default
    RUN/model.int8.onnx) only when its test accuracy is at most `max_drop` points below fp32's.

    The report's `written` says whether it was; ExportError or DataError for bad input."""
    if isinstance(calibration, bool) or not 1 <= calibration <= MAX_CALIBRATION:
        raise ExportError(f"--calibration {calibration} is outside 1 to {MAX_CALIBRATION:,} images")
    if not (0 <= max_drop <= 100):  # NaN fails too
        raise ExportError(f"--max-drop {max_drop:g} is outside 0 to 100 accuracy points")
    check_options(batches, seconds, "quantize")  # bench's bounds: a batch of 10⁸ is refused, not allocated
    root = Path(run)
    target = Path(out) if out is not None else root / INT8_NAME
    check_target(root, target, allowed=(INT8_NAME,))  # before the minutes of work; never the fp32 model.onnx
    info = read_info(root)  # a folder that is not a run is refused before its lock file is made
    notes: list[str] = []
    fp32_path = RunPaths(root).onnx
    if not fp32_path.is_file():
        export_run(root)
        notes.append(f"{fp32_path} did not exist: exported the run first")
    with locked(root, "cnnspec quantize", shared=not inside_run(root, target)):
        fp32 = open_session(fp32_path, "cpu", threads=torch.get_num_threads())
        meta = model_metadata(fp32)
        ensure_exported_from(meta, str(fp32_path), str(root), info.spec_hash, info.run_id)
        if meta.weights_dtype not in ("float32", "float16"):
            raise ExportError(f"{fp32_path} holds {meta.weights_dtype} weights already; quantize an fp32 export")
        ensure_batches_fit(meta, None, batches, fp32_path)  # before the calibration's minutes of work
        return _quantize_locked(root, fp32, meta, target, calibration, max_drop, batches, seconds, notes)


def _quantize_locked(
    root: Path,
    fp32: Session,
    meta: ModelMetadata,
    target: Path,
    calibration: int,
    max_drop: float,
    batches: Sequence[int],
    seconds: float,
    notes: list[str],
) -> QuantizeReport:
    from cnnspec.training.datasets import load_data

    opened = open_run(root)
    data = load_data(opened.spec, need_train=False)
    if data.test is None:
        raise DataError(f"{root}: the dataset has no test split to measure INT8's accuracy on")
    if data.class_names != meta.class_names:
        raise DataError("the dataset's classes differ from the ones the model was trained on")
    if calibration > len(data.train):
        notes.append(f"the training split holds {len(data.train)} images: calibrated on all of them")
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="cnnspec-quantize-") as folder:
        scratch = Path(folder) / "model.int8.onnx"
        model, settings = _quantize(fp32.path, scratch, meta, data.train, calibration, opened.spec.train.seed, notes)
        # fp32's metadata, less its parity figures against torch (the INT8 file's are in `quantization`).
        int8_meta = replace(meta, weights_dtype="int8", parity=None, quantization=settings, extra=dict(meta.extra))
        del model.metadata_props[:]
        attach(model, int8_meta)
        onnx.save(model, str(scratch))
        int8 = open_session(scratch, "cpu", threads=threads)
        images, acc32, acc8, agree = _accuracy(fp32, int8, data.test, meta)
        speed = _speed(fp32, int8, meta, batches, seconds)
        cpu = cpu_info()
        macs = int(opened.graph.macs)
        report = QuantizeReport(
            run=root, fp32_path=fp32.path, path=target, written=False, max_drop=max_drop, settings=settings,
            test_images=images, fp32_accuracy=acc32, int8_accuracy=acc8, agreement=agree, speed=speed,
            threads=threads, cpu=cpu, macs=macs, fp32_bytes=fp32.path.stat().st_size, int8_bytes=scratch.stat().st_size,
            verdict=verdict(speed, cpu, macs), notes=notes,
        )  # fmt: skip
        if report.drop > max_drop:
            return report
        int8_meta.quantization = {
            **settings, "fp32_accuracy": acc32, "int8_accuracy": acc8, "agreement": agree, "test_images": images
        }  # fmt: skip
        attach(model, int8_meta)
        try:
            with atomic_path(target) as tmp:
                onnx.save(model, str(tmp))
                report.int8_bytes = tmp.stat().st_size
        except OSError as exc:
            raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
        report.written = True
        return report
