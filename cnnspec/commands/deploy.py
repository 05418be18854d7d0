"""`cnnspec export`, `predict`, `bench` and `serve`: thin wrappers over cnnspec.deploy.

torch is imported inside export and bench only; predict and serve need onnxruntime alone.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cnnspec.commands.common import Format, Which, echo, fail, stderr_console, stdout_console
from cnnspec.terminal import cell, printable

if TYPE_CHECKING:
    from cnnspec.deploy.bench import BenchResult
    from cnnspec.deploy.exporter import ExportReport
    from cnnspec.deploy.predict import PredictResult
    from cnnspec.deploy.quantize import QuantizeReport
    from cnnspec.deploy.serve import Stopped


class DeviceChoice(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ConvAlgo(StrEnum):
    exhaustive = "exhaustive"
    heuristic = "heuristic"
    default = "default"


def _batches(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated batch sizes such as 1,64, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise typer.BadParameter(f"batch sizes must be positive integers, got {text!r}")
    return values


def _accuracy_points(value: float) -> float:
    """--max-drop: 0 to 100 points, said as such for nan too (a range check alone calls nan "over 100")."""
    if not 0 <= value <= 100:  # False for nan
        raise typer.BadParameter(f"takes 0 to 100 accuracy points, got {value:g}")
    return value


def export(
    run: Annotated[Path, typer.Argument(help="Run directory written by `cnnspec train`.", metavar="RUN")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="ONNX file to write; default RUN/model.onnx.")
    ] = None,
    which: Annotated[Which, typer.Option("--weights", help="best or last checkpoint.")] = Which.best,
    format: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
) -> None:
    """Export a run to ONNX; onnxruntime must match torch at batch 1 and 7 or nothing is written (exit 1)."""
    from cnnspec.deploy.exporter import export_run
    from cnnspec.errors import CnnspecError

    stdout = stdout_console()

    try:
        report = export_run(run, out, which=which.value)
    except CnnspecError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:  # the file is written only after the gate: an interrupt leaves none
        stderr_console().print("interrupted: no ONNX file was written", markup=False)
        raise typer.Exit(130) from None
    if format is Format.json:
        stdout.print(json.dumps(_export_json(report), indent=2), markup=False)
    else:
        stdout.print(_export_text(report), markup=False)


def predict(
    model: Annotated[Path, typer.Argument(help="ONNX file written by `cnnspec export`.", metavar="MODEL")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files, or folders of images.", metavar="IMAGE")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, metavar="K", help="Classes to show per image.")] = 5,
    format: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
    device: Annotated[
        DeviceChoice, typer.Option("--device", help="auto (CUDA provider when it works), cpu or cuda.")
    ] = DeviceChoice.auto,
) -> None:
    """Classify images with onnxruntime, preprocessing them as the model's metadata says; a labelled folder
    (ROOT/CLASS/*.png) also gets its accuracy and confusion matrix."""
    from cnnspec.deploy.predict import predict as run_predict
    from cnnspec.errors import CnnspecError

    err, stdout = stderr_console(), stdout_console()

    try:
        result = run_predict(model, inputs, top_k=top_k, device=device.value)
    except CnnspecError as exc:
        raise fail(exc) from None
    if format is Format.json:
        stdout.print(json.dumps(result.to_json(), indent=2), markup=False)
        return
    err.print(f"onnxruntime provider: {result.provider}", markup=False)
    stdout.print(_predict_text(result), markup=False)
    if result.evaluation is not None:
        stdout.print(_labelled_text(result), markup=False)
        if len(result.class_names or ()) <= MATRIX_SHOWN:
            stdout.print(_confusion_table(result))
        else:
            stdout.print(f"confusion matrix: {len(result.class_names or ())} classes, in --format json", markup=False)


def bench(
    target: Annotated[Path, typer.Argument(help="Run directory or exported .onnx file.", metavar="RUN|MODEL")],
    batch: Annotated[str, typer.Option("--batch", "-b", metavar="SIZES", help="Comma-separated batch sizes.")] = "1,64",
    device: Annotated[
        DeviceChoice, typer.Option("--device", help="auto (GPU when both engines can use it), cpu or cuda.")
    ] = DeviceChoice.auto,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.0, help="Minimum timing per engine and batch size.")
    ] = 1.0,
    format: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
    io_binding: Annotated[
        bool, typer.Option("--io-binding", help="Inputs placed on the device first, logits left there (IOBinding).")
    ] = False,
    conv_algo: Annotated[
        ConvAlgo | None,
        typer.Option("--conv-algo", help="cuDNN convolution algorithm search of the CUDA provider."),
    ] = None,
) -> None:
    """torch eager vs onnxruntime on the same input: latency (median, p90), throughput and their ratio."""
    from cnnspec import cpu_tuning

    # torch's threads wait as `train`'s would (onnxruntime's own threads spin): before torch loads.
    cpu_tuning.tune_for_compute()
    from cnnspec.deploy.bench import bench as run_bench
    from cnnspec.deploy.session import CONV_ALGO_SEARCHES, CudaOptions
    from cnnspec.errors import CnnspecError

    err, stdout = stderr_console(), stdout_console()

    sizes = _batches(batch)
    cuda = CudaOptions(CONV_ALGO_SEARCHES[list(ConvAlgo).index(conv_algo)]) if conv_algo is not None else None
    try:
        result = run_bench(target, sizes, device=device.value, min_seconds=seconds, io_binding=io_binding, cuda=cuda)
    except CnnspecError as exc:
        raise fail(exc) from None
    if format is Format.json:
        stdout.print(json.dumps(result.to_json(), indent=2), markup=False)
        return
    for note in result.notes:
        err.print(f"note: {printable(note)}", markup=False)
    stdout.print(_bench_table(result))


def quantize(
    run: Annotated[Path, typer.Argument(help="Run directory written by `cnnspec train`.", metavar="RUN")],
    calibration: Annotated[
        int, typer.Option("--calibration", "-n", min=1, metavar="N", help="Training images to calibrate on.")
    ] = 256,
    max_drop: Annotated[
        float,
        typer.Option(
            "--max-drop", metavar="POINTS", callback=_accuracy_points, help="Test accuracy INT8 may lose (0 to 100)."
        ),
    ] = 1.0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="INT8 file; default RUN/model.int8.onnx.")
    ] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", metavar="SIZES", help="Batch sizes to time.")] = "1,64",
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.0, help="Minimum timing per model and batch size.")
    ] = 1.0,
    format: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
) -> None:
    """Static INT8 (QDQ) of RUN/model.onnx calibrated on training images: test accuracy and speed of fp32 and
    INT8 side by side; the INT8 file is written only when accuracy drops by at most --max-drop points (else exit 1)."""
    from cnnspec.deploy.quantize import quantize_run
    from cnnspec.errors import CnnspecError, ExportError

    stdout = stdout_console()
    try:
        report = quantize_run(run, calibration, max_drop, out, _batches(batch), seconds)
    except CnnspecError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:  # the INT8 file is written last, atomically: an interrupt leaves none
        stderr_console().print("interrupted: no INT8 file was written", markup=False)
        raise typer.Exit(130) from None
    if format is Format.json:
        stdout.print(json.dumps(report.to_json(), indent=2), markup=False)
    else:
        stdout.print(_quantize_table(report))
        stdout.print(_quantize_text(report), markup=False)
    if not report.written:
        raise fail(
            ExportError(
                f"not written: INT8 loses {report.drop:.2f} accuracy points on the test split, more than"
                f" --max-drop {report.max_drop:g}",
                hint="calibrate on more images (--calibration), or allow a larger drop (--max-drop)",
            )
        ) from None


def _quantize_table(report: QuantizeReport) -> object:
    from rich.table import Table

    table = Table(
        title=cell(f"{report.run}: fp32 vs INT8 on {report.cpu.name}, {report.threads} threads"), title_justify="left"
    )
    table.add_column("")
    table.add_column("fp32", justify="right")
    table.add_column("INT8", justify="right")
    table.add_column("INT8 ÷ fp32", justify="right")
    drop = f"{-report.drop:+.2f} points"
    table.add_row(f"test accuracy ({report.test_images} images)", f"{report.fp32_accuracy:.4f}",
                  f"{report.int8_accuracy:.4f}", drop)  # fmt: skip
    table.add_row("file size (MB)", f"{report.fp32_bytes / 1e6:.2f}", f"{report.int8_bytes / 1e6:.2f}",
                  f"{report.int8_bytes / report.fp32_bytes:.2f}×")  # fmt: skip
    for r in report.speed:
        table.add_row(f"batch {r.batch}: median ms", f"{r.fp32.median_ms:.3f}", f"{r.int8.median_ms:.3f}", "")
        table.add_row(f"batch {r.batch}: images/s", f"{r.fp32.images_per_second(r.batch):,.0f}",
                      f"{r.int8.images_per_second(r.batch):,.0f}", f"{r.speedup:.2f}×")  # fmt: skip
    return table


def _quantize_text(report: QuantizeReport) -> str:
    s = report.settings
    lines = [
        f"agreement: INT8 and fp32 give the same class on {report.agreement:.2%} of the test images",
        f"calibration: {s['calibration_images']} training images, {s['method']}, {s['format']},"
        f" per-channel weights, quantized ops: {', '.join(s['ops']) or 'none'}",
        f"cpu int8 instructions: {', '.join(report.cpu.flags) or 'none (no VNNI or AMX)'}",
        *report.verdict,
        *(f"note: {printable(n)}" for n in report.notes),
    ]
    if report.written:
        lines.append(
            f"wrote {printable(report.path)}: accuracy drop {report.drop:.2f} points is within --max-drop"
            f" {report.max_drop:g}"
        )
    return "\n".join(lines)


def _export_json(report: ExportReport) -> dict[str, object]:
    meta = report.metadata
    return {
        "path": str(report.path),
        "bytes": report.bytes,
        "exporter": meta.exporter,
        "opset": meta.opset,
        "dynamic_batch": meta.dynamic_batch,
        "weights_dtype": meta.weights_dtype,
        "parity": [p.to_json() for p in report.parity],
        "notes": report.notes,
    }


def _export_text(report: ExportReport) -> str:
    meta = report.metadata
    batch = "dynamic batch" if meta.dynamic_batch else "batch fixed at 1"
    lines = [
        f"wrote {printable(report.path)} ({report.bytes / 1e6:.2f} MB; opset {meta.opset}, {batch}, "
        f"{meta.weights_dtype} weights, torch {meta.exporter} exporter)",
        "parity vs torch (onnxruntime CPU): "
        + ", ".join(f"batch {p.batch} max|Δ| = {p.max_abs_diff:.2g}" for p in report.parity)
        + f" (bound {max(p.bound for p in report.parity):.2g})",
    ]
    lines += [f"note: {printable(n)}" for n in report.notes]
    return "\n".join(lines)


def _predict_text(result: PredictResult) -> str:
    lines = []
    for p in result.predictions:
        # Class names come from the ONNX file, file names from whoever made the folder: both escaped.
        scores = ", ".join(f"{printable(s.name)} ({s.probability:.3f})" for s in p.top)
        lines.append(f"{printable(p.file)}: {scores}")
    return "\n".join(lines)


# The most classes whose confusion matrix the text output draws; --format json always has it.
MATRIX_SHOWN = 20


def _labelled_text(result: PredictResult) -> str:
    e = result.evaluation
    assert e is not None
    top5 = f", top-5 {e.top5_accuracy:.4f}" if e.top5_accuracy is not None else ""
    macro = f"{e.macro_f1:.4f}" if e.macro_f1 is not None else "–"
    return f"accuracy {e.accuracy:.4f}{top5}, macro F1 {macro} on {e.images} labelled images"


def _confusion_table(result: PredictResult) -> object:
    from rich.table import Table

    e, names = result.evaluation, result.class_names or []
    assert e is not None
    table = Table(title="confusion matrix (rows: true class, columns: predicted)", title_justify="left")
    table.add_column("true")
    for name in names:
        table.add_column(cell(name), justify="right")
    for name, row in zip(names, e.confusion_matrix, strict=True):
        table.add_row(cell(name), *(str(v) for v in row))
    return table


def _bench_table(result: BenchResult) -> object:
    from rich.table import Table

    where = "GPU" if result.device == "cuda" else f"CPU, {result.threads} threads"
    table = Table(title=cell(f"{result.name} on {where}"), title_justify="left")
    table.add_column("batch", justify="right")
    table.add_column("engine")
    for column in ("median ms", "p90 ms", "images/s", "ORT ÷ torch"):
        table.add_column(column, justify="right")
    for r in result.rows:
        for engine, timing, ratio in (("torch eager", r.torch, ""), (result.provider, r.onnx, f"{r.ratio:.2f}×")):
            table.add_row(
                str(r.batch),
                cell(engine),
                f"{timing.median_ms:.2f}",
                f"{timing.p90_ms:.2f}",
                f"{timing.images_per_second(r.batch):,.0f}",
                ratio,
            )
    return table


def serve(
    model: Annotated[Path, typer.Argument(help="ONNX file written by `cnnspec export`.", metavar="MODEL")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="N", min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8000,
    max_batch: Annotated[
        int, typer.Option("--max-batch", metavar="N", min=1, help="Most images in one model call.")
    ] = 32,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            "--max-wait-ms", metavar="MS", min=0.0, help="How long a batch waits for more after its first request."
        ),
    ] = 5.0,
    max_queue: Annotated[
        int,
        typer.Option(
            "--max-queue", metavar="N", min=1, help="Most requests waiting for a batch; more are answered 503."
        ),
    ] = 256,
    max_request_bytes: Annotated[
        int,
        typer.Option(
            "--max-request-bytes", metavar="BYTES", min=1, help="Longest request body; longer ones are answered 413."
        ),
    ] = 16 * 2**20,
    device: Annotated[
        DeviceChoice, typer.Option("--device", help="auto (CUDA provider when it works), cpu or cuda.")
    ] = DeviceChoice.auto,
    threads: Annotated[
        int | None,
        typer.Option("--threads", metavar="N", min=1, help="onnxruntime intra-op threads (default: one per core)."),
    ] = None,
    conv_algo: Annotated[
        ConvAlgo | None,
        typer.Option("--conv-algo", help="cuDNN convolution algorithm search of the CUDA provider."),
    ] = None,
    read_timeout: Annotated[
        float,
        typer.Option(
            "--read-timeout",
            metavar="SECONDS",
            help="A request's headers, then its body, must each arrive within this; else closed or answered 408.",
        ),
    ] = 30.0,
    shutdown_grace: Annotated[
        float,
        typer.Option(
            "--shutdown-grace",
            metavar="SECONDS",
            help="At SIGTERM, bodies still arriving get this long, then are answered 503.",
        ),
    ] = 5.0,
) -> None:
    """Serve a model over HTTP with dynamic batching: POST /predict, GET /health, /metadata, /metrics."""
    import os
    import signal

    from cnnspec.deploy.serve import HOLD_ENV, ServedModel, ServeOptions
    from cnnspec.deploy.serve import serve as run_serve
    from cnnspec.deploy.session import CONV_ALGO_SEARCHES, CudaOptions
    from cnnspec.errors import CnnspecError

    cuda = CudaOptions(CONV_ALGO_SEARCHES[list(ConvAlgo).index(conv_algo)]) if conv_algo is not None else None
    options = ServeOptions(
        host,
        port,
        max_batch,
        max_wait_ms,
        max_queue,
        max_request_bytes,
        device.value,
        threads,
        cuda,
        read_timeout=read_timeout,
        shutdown_grace=shutdown_grace,
    )
    hold_file = os.environ.get(HOLD_ENV)
    hold = (lambda: Path(hold_file).exists()) if hold_file else None

    def ready(served: ServedModel, url: str) -> None:
        meta = served.meta
        echo(
            f"serving {printable(model)} ({printable(meta.spec_name or 'model')}, {len(meta.class_names)} classes) "
            f"at {url} on {served.providers[0]}: up to {max_batch} images a batch, {max_wait_ms:g} ms wait, "
            f"{max_queue} requests queued",
            stderr=True,
        )
        sys.stderr.flush()

    try:
        stopped = run_serve(model, options, hold=hold, on_ready=ready)
    except CnnspecError as exc:
        raise fail(exc) from None
    echo(_stopped_line(stopped, shutdown_grace), stderr=True)
    if stopped.signal == signal.SIGINT:
        raise typer.Exit(130)


def _requests(n: int) -> str:
    return f"{n:,} request{'' if n == 1 else 's'}"


def _stopped_line(stopped: Stopped, grace: float) -> str:
    """The last line `serve` says: how it stopped and, truthfully, what it left unanswered."""
    import signal

    how = "interrupted" if stopped.signal == signal.SIGINT else "stopped"
    if stopped.forced:
        left = (
            f"{_requests(stopped.unanswered)} it had accepted {'was' if stopped.unanswered == 1 else 'were'} "
            "cut off unanswered (answered 503 where no answer had begun)"
            if stopped.unanswered
            else "no request was left unanswered"
        )
        return f"interrupted again: stopped without waiting; {left}"
    line = f"{how}: answered every request it had received"
    if stopped.cut_uploads:
        line += (
            f"; {_requests(stopped.cut_uploads)} whose body was still arriving {grace:g} s into the shutdown "
            f"{'was' if stopped.cut_uploads == 1 else 'were'} answered 503"
        )
    return line
