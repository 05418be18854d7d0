"""`cnnspec serve`: an exported model over HTTP (Starlette on uvicorn), with dynamic batching.

`load_model` opens the file as predict does (the same safety checks, the same metadata checks, the
same provider choice) and refuses at start a file that is not a cnnspec image classifier.
`create_app` is the ASGI app: POST /predict (image uploads, or a JSON array of the model's input),
GET /health, /metadata and /metrics. Images go through the very functions predict uses
(cnnspec.deploy.images: decode, then the model's recorded preprocessing), so both give the same
answer for the same file. Requests are run together by a `Batcher`; `serve` binds the port and runs
uvicorn until SIGTERM or Ctrl-C, and finishes every request it accepted before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnspec.deploy.batcher import Batcher, QueueFull
from cnnspec.deploy.images import ImageTooLarge, decode_bytes, prepare_images
from cnnspec.deploy.metadata import ModelMetadata
from cnnspec.deploy.predict import model_metadata, run_batches, softmax, top_classes
from cnnspec.deploy.serve_metrics import CONTENT_TYPE, ServeMetrics
from cnnspec.deploy.session import CudaOptions, Device, Session, open_session, probe_input
from cnnspec.errors import CnnspecError, DataError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_WAIT_MS = 5.0
DEFAULT_MAX_QUEUE = 256  # requests waiting for a batch: 8 full batches of 32
DEFAULT_MAX_REQUEST_BYTES = 16 * 2**20
DEFAULT_TOP_K = 5
# Slowloris bounds: a request's headers, and then its body, must each arrive within this many seconds
# (a whole body of 16 MiB in 30 s is 4.5 Mbit/s); later, the connection is closed (headers) or answered 408.
DEFAULT_READ_TIMEOUT = 30.0
# At SIGTERM a body still arriving gets this many more seconds, then is answered 503, so a stalled client
# cannot hold the shutdown; requests already received are all answered, however long their queue.
DEFAULT_SHUTDOWN_GRACE = 5.0
# Images (and JSON bodies) decoded at once, each up to preprocess.MAX_IMAGE_PIXELS: memory is bounded by
# this many decodes, not by the number of clients.
DECODE_SLOTS = max(1, min(4, os.cpu_count() or 1))
LOG = logging.getLogger("uvicorn.error")  # uvicorn's own log, at warning level
# A supported test and drill hook: while the file this names exists, the batcher takes no new batch
# (requests still queue), so a test can fill the queue or stop the server with requests waiting.
HOLD_ENV = "CNNSPEC_SERVE_HOLD"
IMAGE_TYPES = ("image/*", "application/octet-stream")
JSON_TYPE = "application/json"
MULTIPART_TYPE = "multipart/form-data"


@dataclass(frozen=True)
class ServeOptions:
    """How `serve` listens and batches (the command's options)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0: any free port
    max_batch: int = DEFAULT_MAX_BATCH  # images per model call
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS  # after a batch's first request
    max_queue: int = DEFAULT_MAX_QUEUE  # requests waiting; one more is answered 503
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # a longer body is answered 413
    device: Device = "auto"
    threads: int | None = None  # onnxruntime's intra-op threads; None: its default, one per core
    cuda: CudaOptions | None = None  # the CUDA provider's settings (`--conv-algo`), bench's own
    read_timeout: float = DEFAULT_READ_TIMEOUT  # seconds for a request's headers, then for its body
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE  # seconds a body still arriving at SIGTERM is given

    def check(self) -> None:
        """CnnspecError naming the first option out of its range."""
        bounds = (
            ("--port", self.port, 0, 65535),
            ("--max-batch", self.max_batch, 1, 65536),
            ("--max-wait-ms", self.max_wait_ms, 0, 60_000),
            ("--max-queue", self.max_queue, 1, 1_000_000),
            ("--max-request-bytes", self.max_request_bytes, 1, 2**31),
            ("--threads", self.threads or 1, 1, 1024),
            ("--read-timeout", self.read_timeout, 0.001, 3600),
            ("--shutdown-grace", self.shutdown_grace, 0, 3600),
        )
        for name, value, low, high in bounds:
            if not low <= value <= high:  # NaN fails too; an int is shown as written (1,000,000,000, not 1e+09)
                shown = f"{value:,}" if isinstance(value, int) else f"{value:g}"
                raise CnnspecError(f"{name} {shown} is out of range: it takes {low:,} to {high:,}")


@dataclass
class ServedModel:
    """An open model and its checked metadata."""

    session: Session
    meta: ModelMetadata

    @property
    def providers(self) -> list[str]:
        """The providers onnxruntime really runs the session with, first the one that runs it."""
        return list(self.session.session.get_providers())

    def run(self, x: np.ndarray, max_batch: int) -> np.ndarray:  # (N, C, H, W) -> (N, classes)
        return run_batches(self.session, x, len(self.meta.class_names), max_batch, stoppable=False)


def open_model_session(
    path: str | Path, device: Device, threads: int | None = None, cuda: CudaOptions | None = None
) -> Session:
    """The one place `serve` chooses a provider: predict's session, with its checks and CUDA probe
    (`device="cuda"` that falls back to the CPU is refused, never served slowly)."""
    return open_session(path, device, threads, cuda=cuda)


def load_model(
    path: str | Path, device: Device = "auto", threads: int | None = None, cuda: CudaOptions | None = None
) -> ServedModel:
    """The model at `path`, refused (ExportError) when predict would refuse it: external data that leaves
    its folder, control flow, no or damaged cnnspec metadata, a graph that is not an image classifier, or
    one whose real output on a probe batch (zeros) has another number of columns than it names classes
    (each batch is checked again as it runs: a 500 saying so)."""
    session = open_model_session(path, device, threads, cuda)
    meta = model_metadata(session)
    run_batches(session, probe_input(session.model), len(meta.class_names), batch_size=1)
    return ServedModel(session, meta)


def json_text(text: str) -> str:
    """`text` as JSON can carry it: a file name's bytes that are not UTF-8 (Python's stand-ins for them, which
    no JSON encoder takes) written as \\xNN escapes, the rest unchanged."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Refused(Exception):
    """A request answered with an error status and a JSON body saying why."""

    def __init__(
        self, status: int, reason: str, message: str, hint: str | None = None, *, unread: bool = False
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.hint = status, reason, message, hint
        self.unread = unread or status == 413

    def response(self) -> JSONResponse:
        body: dict[str, str] = {"error": json_text(self.message)}
        if self.hint:
            body["hint"] = json_text(self.hint)
        # A body left unread (413, 408) is not read afterwards either: the connection closes after the answer.
        headers = {"connection": "close"} if self.unread else None
        return JSONResponse(body, status_code=self.status, headers=headers)


class _ClientGone(Exception):
    """The client closed its connection before its request body arrived: nobody to answer."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


class Uploads:
    """The request bodies being read, each within its deadline; `cut(grace)` (at shutdown) brings every
    deadline, and those of bodies read later, within `grace` seconds."""

    def __init__(self) -> None:
        self._reading: set[asyncio.Timeout] = set()
        self.cut_at: float | None = None  # the event loop's time after which no body is waited for
        self.cut_off = 0  # bodies answered 503 because the server was shutting down

    @contextlib.asynccontextmanager
    async def reading(self, seconds: float) -> AsyncIterator[None]:
        """TimeoutError when the block takes longer than `seconds`, or runs past the cut."""
        deadline = asyncio.get_running_loop().time() + seconds
        if self.cut_at is not None:
            deadline = min(deadline, self.cut_at)
        async with asyncio.timeout_at(deadline) as timeout:
            self._reading.add(timeout)
            try:
                yield
            finally:
                self._reading.discard(timeout)

    def cut(self, grace: float) -> None:
        self.cut_at = asyncio.get_running_loop().time() + grace
        for timeout in self._reading:
            when = timeout.when()
            if when is None or when > self.cut_at:
                timeout.reschedule(self.cut_at)


@dataclass
class Lifecycle:
    """What the app and the server share about stopping: the uploads to cut at shutdown, the requests
    begun and not answered, and whether a second Ctrl-C stopped it without waiting (`forced`)."""

    uploads: Uploads = field(default_factory=Uploads)
    in_flight: int = 0
    forced: bool = False
    unanswered: int = 0  # requests a forced stop cut off (answered 503 where no answer had begun)


def _from_error(exc: CnnspecError, status: int, reason: str) -> _Refused:
    first = exc.diagnostics[0]
    return _Refused(status, reason, first.message, first.hint)


async def read_body(
    request: Request,
    limit: int,
    uploads: Uploads | None = None,
    seconds: float = DEFAULT_READ_TIMEOUT,
    grace: float = DEFAULT_SHUTDOWN_GRACE,
) -> bytes:
    """The request's body, or 413 as soon as it is known to be longer than `limit`: from its
    Content-Length before a byte of it is read, else once the bytes read pass the limit. 408 when it has
    not all arrived within `seconds`; 503 when the server began shutting down and `grace` has passed
    (`uploads.cut`); _ClientGone when the client disconnects first."""
    too_long = f"this server takes request bodies of at most {limit:,} bytes (--max-request-bytes)"
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise _Refused(400, "bad_input", f"Content-Length {declared[:40]!r} is not a number of bytes")
        if int(declared) > limit:
            raise _Refused(413, "too_large", f"the request body is {int(declared):,} bytes; {too_long}")
    uploads = uploads if uploads is not None else Uploads()
    chunks: list[bytes] = []
    size = 0
    try:
        async with uploads.reading(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _Refused(413, "too_large", f"the request body is over {limit:,} bytes; {too_long}")
                chunks.append(chunk)
    except TimeoutError:
        if uploads.cut_at is not None:
            uploads.cut_off += 1
            raise _Refused(
                503,
                "shutting_down",
                f"the server is shutting down: the request body was still arriving {grace:g} s after it began "
                f"to ({size:,} bytes read)",
                hint="send it again to a server that is running",
                unread=True,
            ) from None
        raise _Refused(
            408,
            "timeout",
            f"the request body did not arrive within {seconds:g} s (--read-timeout): {size:,} bytes read",
            unread=True,
        ) from None
    except ClientDisconnect:
        raise _ClientGone(size) from None
    return b"".join(chunks)


async def _uploads(request: Request, body: bytes, limit: int) -> list[tuple[str, bytes]]:
    """The files of a multipart/form-data body, in order, each as (file name, bytes)."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, stream(), max_files=limit, max_fields=limit, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _Refused(400, "bad_input", f"the multipart/form-data body cannot be read: {exc.message}") from None
    try:
        files = [
            (value.filename or field, await value.read())
            for field, value in form.multi_items()
            if isinstance(value, UploadFile)
        ]
    finally:
        await form.close()
    if not files:
        raise _Refused(400, "bad_input", "the multipart/form-data body holds no file", hint=_INPUT_HINT)
    return files


_INPUT_HINT = (
    "POST an image (multipart/form-data file fields, or the raw bytes with an image/* Content-Type) or a "
    "JSON array of the model's input ([C, H, W] or [N, C, H, W], preprocessed)"
)


def _images_input(items: list[tuple[str | None, bytes]], meta: ModelMetadata) -> np.ndarray:
    """Image bytes (file name or None, bytes) → the model's (N, C, H, W) input, by predict's own decoding
    and preprocessing."""
    decoded = [
        decode_bytes(data, meta, f"upload {name!r}" if name is not None else "the request body") for name, data in items
    ]
    return prepare_images(decoded, meta)


def _array_input(body: bytes, meta: ModelMetadata) -> np.ndarray:
    """A JSON array of shape [C, H, W] or [N, C, H, W] of finite numbers → (N, C, H, W) float32."""
    c, h, w = meta.input_shape
    expected = f"an array of numbers of shape [{c}, {h}, {w}] or [N, {c}, {h}, {w}] (the preprocessed input)"
    try:
        value = json.loads(body)
    except RecursionError:
        raise _Refused(400, "bad_input", "the JSON body nests too deep", hint=expected) from None
    except ValueError as exc:
        raise _Refused(400, "bad_input", f"the body is not JSON: {exc}", hint=expected) from None
    try:
        array = np.asarray(value)
    except ValueError:  # ragged lists
        raise _Refused(
            400, "bad_input", "the JSON array is ragged (rows of different lengths)", hint=expected
        ) from None
    if array.dtype.kind not in "iuf":
        raise _Refused(400, "bad_input", f"the JSON body must be {expected}; it holds other values than numbers")
    if list(array.shape) == [c, h, w]:
        array = array[None]
    if array.ndim != 4 or list(array.shape[1:]) != [c, h, w] or len(array) == 0:
        raise _Refused(400, "bad_input", f"the JSON array has shape {list(array.shape)}; expected {expected}")
    # Checked before the cast to float32: a value beyond float32's range would become inf there, with numpy's
    # RuntimeWarning printed on the server's stderr. JSON has no NaN or inf, but Python's reader takes them.
    limit = float(np.finfo(np.float32).max)
    wide = array.astype(np.float64)
    if not (np.isfinite(wide).all() and (np.abs(wide) <= limit).all()):
        flat = np.abs(wide).ravel()
        bad = int(np.argmax(~np.isfinite(flat) | (flat > limit)))
        where = "[" + ", ".join(map(str, np.unravel_index(bad, array.shape))) + "]"
        raise _Refused(
            400,
            "bad_input",
            f"the JSON array holds {wide.ravel()[bad]:g} at {where}: values must be finite numbers within "
            f"float32's range (±{limit:.6g})",
            hint=expected,
        )
    return np.ascontiguousarray(wide, dtype=np.float32)


def _top_k(request: Request) -> int:
    raw = request.query_params.get("top_k", str(DEFAULT_TOP_K))
    if not raw.isdigit() or int(raw) < 1:
        raise _Refused(400, "bad_input", f"top_k must be a positive integer, got {raw[:40]!r}")
    return int(raw)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


class _Counted:
    """ASGI middleware: every HTTP answer counted by path and status, /predict's latency measured, the
    requests not yet answered counted (`lifecycle.in_flight`). After a forced stop (a second Ctrl-C) a
    request cancelled unanswered is answered 503 where no answer had begun, and counted as cut off,
    instead of uvicorn's plain-text 500 and a CancelledError traceback."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, lifecycle: Lifecycle) -> None:
        self.app, self.metrics, self.lifecycle = app, metrics, lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, begun, done = time.perf_counter(), 500, False, False

        async def sending(message: Message) -> None:
            nonlocal status, begun, done
            if message["type"] == "http.response.start":
                status, begun = int(message["status"]), True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                done = True
            await send(message)

        self.lifecycle.in_flight += 1
        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            if not self.lifecycle.forced:
                raise
            self.lifecycle.unanswered += 0 if done else 1
            if not begun:
                with contextlib.suppress(Exception):
                    await _STOPPED.response()(scope, receive, sending)
        finally:
            self.lifecycle.in_flight -= 1
            self.metrics.request(str(scope["path"]), status, time.perf_counter() - started)


_STOPPED = _Refused(
    503,
    "shutting_down",
    "the server was stopped (a second Ctrl-C) before this request was answered",
    hint="send it again to a server that is running",
    unread=True,
)


def create_app(
    model: ServedModel,
    options: ServeOptions = ServeOptions(),
    *,
    hold: Callable[[], bool] | None = None,
    on_ready: Callable[[], None] | None = None,
    lifecycle: Lifecycle | None = None,
) -> Starlette:
    """The ASGI app serving `model` (its batcher starts and drains with the app's lifespan). `hold`: see
    Batcher; `on_ready` is called once the batcher runs; `lifecycle`: shared with the server that stops it
    (`serve`), a new one by default."""
    lifecycle = lifecycle if lifecycle is not None else Lifecycle()
    decoding = asyncio.Semaphore(DECODE_SLOTS)
    meta = model.meta
    provider = model.providers[0]
    batcher: Batcher
    metrics = ServeMetrics(options.max_batch, lambda: batcher.depth, provider)
    batcher = Batcher(
        lambda x: model.run(x, options.max_batch),
        max_batch=options.max_batch,
        max_wait=options.max_wait_ms / 1000,
        max_queue=options.max_queue,
        observe=metrics.batch,
        hold=hold,
    )

    async def predict(request: Request) -> Response:
        try:
            return await _predict(request)
        except _Refused as refused:
            metrics.error(refused.reason)
            return refused.response()
        except _ClientGone as gone:  # one line, no traceback: a client leaving is not the server's error
            metrics.error("disconnected")
            client = request.client
            who = f"{client.host}:{client.port}" if client is not None else "a client"
            LOG.warning("%s disconnected before its request body arrived (%s bytes read)", who, f"{gone.received:,}")
            return Response(status_code=499)  # nobody reads it: the connection is gone

    async def _predict(request: Request) -> Response:
        top_k = _top_k(request)
        media = _media_type(request)
        kind = "json" if media == JSON_TYPE else "multipart" if media == MULTIPART_TYPE else "image"
        if kind == "image" and not (media.startswith("image/") or media == "application/octet-stream"):
            raise _Refused(
                415,
                "unsupported_media_type",
                f"Content-Type {media or '(none)'!r} is not one POST /predict takes: {MULTIPART_TYPE}, "
                f"{', '.join(IMAGE_TYPES)} or {JSON_TYPE}",
                hint=_INPUT_HINT,
            )
        if batcher.full:  # refused before its body is read and decoded; submit checks again after
            raise _Refused(503, "queue_full", f"the server is busy: {batcher.full_message}", hint="retry later")
        with batcher.incoming():  # a batch that has begun waits for this request (up to --max-wait-ms)
            body = await read_body(
                request, options.max_request_bytes, lifecycle.uploads, options.read_timeout, options.shutdown_grace
            )
            names: list[str | None]
            try:
                async with decoding:  # DECODE_SLOTS at once: memory does not grow with the clients
                    if kind == "json":
                        x = await run_in_threadpool(_array_input, body, meta)
                        names = [None] * len(x)
                    else:
                        items: list[tuple[str | None, bytes]] = [(None, body)]
                        if kind == "multipart":
                            items = list(await _uploads(request, body, options.max_request_bytes))
                        x = await run_in_threadpool(_images_input, items, meta)
                        names = [name for name, _ in items]
            except ImageTooLarge as exc:  # refused from its header, before its pixels are decoded
                raise _from_error(exc, 413, "too_large") from None
            except DataError as exc:  # an image predict would refuse, for the same reason
                raise _from_error(exc, 400, "bad_input") from None
        try:
            logits = await batcher.submit(x)
        except QueueFull as exc:
            raise _Refused(503, "queue_full", f"the server is busy: {exc}", hint="retry later") from None
        except CnnspecError as exc:  # onnxruntime failed on the batch
            raise _from_error(exc, 500, "model") from None
        if not np.isfinite(logits).all():
            raise _Refused(500, "model", "the model's outputs are not finite (NaN or inf) for this input")
        probabilities = softmax(logits)
        predictions = []
        for name, row, probs in zip(names, logits, probabilities, strict=True):
            top = [
                {"index": s.index, "class": s.name, "probability": s.probability, "logit": s.logit}
                for s in top_classes(row, probs, meta, top_k)
            ]
            predictions.append({**({"file": name} if name is not None else {}), "top": top})
        return JSONResponse({"provider": provider, "predictions": predictions})

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "provider": provider,
                "providers": model.providers,
                "model": json_text(str(model.session.path)),
                "queue": batcher.depth,
                "max_queue": options.max_queue,
                "max_batch": options.max_batch,
                "max_wait_ms": options.max_wait_ms,
            }
        )

    async def metadata(request: Request) -> Response:
        return JSONResponse(metadata_json(meta))

    async def metrics_text(request: Request) -> Response:
        return Response(metrics.text(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start()
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            if lifecycle.forced:  # a second Ctrl-C: the queued requests were cancelled, nothing more runs
                batcher.abort()
            else:
                await batcher.stop()  # uvicorn has answered every request by now; the queue is empty

    app = Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metadata", metadata, methods=["GET"]),
            Route("/metrics", metrics_text, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(_Counted, metrics=metrics, lifecycle=lifecycle)
    app.state.lifecycle = lifecycle
    return app


def metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    """What GET /metadata answers: the model's classes, preprocessing and provenance (not its spec text)."""
    pre = meta.preprocessing if meta.preprocessing is not None else meta.image_preprocessing()
    return {
        "class_names": meta.class_names,
        "input_shape": meta.input_shape,
        "preprocessing": pre.to_json(),
        "spec_name": meta.spec_name,
        "spec_hash": meta.spec_hash,
        "architecture_hash": meta.architecture_hash,
        "dataset": meta.dataset,
        "cnnspec_version": meta.cnnspec_version,
        "trained_with": meta.trained_with,
        "exporter": meta.exporter,
        "weights_dtype": meta.weights_dtype,
        "opset": meta.opset,
        "dynamic_batch": meta.dynamic_batch,
    }


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (0: a free port); CnnspecError in one line when it cannot. An IPv6
    address may be written bare (::1) or in brackets as in a URL ([::1])."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise CnnspecError(
            f"cannot listen on {where}: {exc.strerror}", hint="--host takes an address or a host name"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CnnspecError(
                f"cannot listen on {where}: the port is in use",
                hint="stop what listens there, or choose another --port (--port 0 takes a free one)",
            ) from None
        raise CnnspecError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (h11, or httptools when installed) that closes a connection whose request
    headers have not all arrived `seconds` after it opened or after its last answer: uvicorn's keep-alive
    timeout stops at the first byte, so a client trickling a header line a minute would hold it for ever."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class HeaderTimeout(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._too_slow)

        def _too_slow(self) -> None:
            waiting = self.cycle is None or self.cycle.response_complete  # no request, or its answer sent
            if waiting and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeout


class _Server(uvicorn.Server):
    """uvicorn's server, which remembers the signal that stopped it and does not raise it again.

    uvicorn shuts down gracefully on SIGINT and SIGTERM (stops listening, lets every request it
    accepted finish, then the app's lifespan ends) and then raises the signal again, so the process
    would die of it; `serve` returns it instead and the command chooses the exit status (0 for SIGTERM).
    At shutdown, bodies still arriving get `grace` seconds (Uploads.cut). A second Ctrl-C stops without
    waiting: the requests left are cancelled and answered 503 (`Lifecycle.unanswered` counts them).
    """

    stopped_by: int | None = None

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, grace: float) -> None:
        super().__init__(config)
        self.lifecycle, self.grace = lifecycle, grace

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stopped_by is None:
            self.stopped_by = sig
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.lifecycle.uploads.cut(self.grace)
        await super().shutdown(sockets)
        if self.force_exit:  # uvicorn stopped waiting: end what is left here, each with an answer, quietly
            self.lifecycle.forced = True
            tasks = list(self.server_state.tasks)
            for task in tasks:
                task.cancel()
            if tasks:  # a decode in a worker thread finishes first (it cannot be cancelled): seconds at most
                await asyncio.wait(tasks, timeout=30)
            await self.lifespan.shutdown()  # uvicorn skips it when forced; left, it is cancelled with a traceback


@dataclass(frozen=True)
class Stopped:
    """How `serve` ended: the signal (SIGTERM, SIGINT) and the accepted requests it did not finish: bodies
    still arriving after the shutdown grace (`cut_uploads`), and, after a second Ctrl-C, every request left
    (`unanswered`)."""

    signal: int | None
    forced: bool = False
    unanswered: int = 0
    cut_uploads: int = 0


def serve(
    model_path: str | Path,
    options: ServeOptions = ServeOptions(),
    *,
    hold: Callable[[], bool] | None = None,
    on_ready: Callable[[ServedModel, str], None] | None = None,
) -> Stopped:
    """Serve the model until SIGTERM or Ctrl-C, answering every request accepted before it (bodies still
    arriving get `options.shutdown_grace` seconds); returns how it stopped. CnnspecError (before anything
    listens) when the options, the model or the address cannot be used. `on_ready(model, url)` is called
    once requests are taken."""
    options.check()
    model = load_model(model_path, options.device, options.threads, options.cuda)
    sock = listen(options.host, options.port)
    url = url_of(sock)
    ready = (lambda: on_ready(model, url)) if on_ready is not None else None
    lifecycle = Lifecycle()
    app = create_app(model, options, hold=hold, on_ready=ready, lifecycle=lifecycle)
    config = uvicorn.Config(
        app,
        http=header_timeout_protocol(options.read_timeout),
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=None,  # every received request is answered, however long its queue
        timeout_keep_alive=5,  # an idle keep-alive connection is closed after 5 s (uvicorn's default)
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers: at most 16 KiB (h11's default)
        server_header=False,
    )
    server = _Server(config, lifecycle, options.shutdown_grace)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return Stopped(server.stopped_by, lifecycle.forced, lifecycle.unanswered, lifecycle.uploads.cut_off)
