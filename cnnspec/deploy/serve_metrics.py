"""What `cnnspec serve` counts, in Prometheus' text exposition format (prometheus_client).

Each server has its own registry (not prometheus_client's global one), so two apps in one process
never mix their counts and the process's own collectors (GC, platform) are left out.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Request latency, seconds: from 0.5 ms (a tiny model on a quiet machine) to 10 s (a deep queue).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PATHS = frozenset({"/predict", "/health", "/metadata", "/metrics"})
# Why a request was refused or failed: the `reason` label of cnnspec_serve_errors_total.
REASONS = (
    "too_large",
    "bad_input",
    "unsupported_media_type",
    "queue_full",
    "model",
    "timeout",  # a body slower than --read-timeout (408)
    "disconnected",  # the client left before its body arrived
    "shutting_down",  # a body still arriving after the shutdown grace, or cut by a second Ctrl-C (503)
)


def batch_buckets(max_batch: int) -> tuple[float, ...]:
    """Powers of two up to `max_batch`, and `max_batch` itself."""
    edges = [1]
    while edges[-1] * 2 < max_batch:
        edges.append(edges[-1] * 2)
    if edges[-1] != max_batch:
        edges.append(max_batch)
    return tuple(float(e) for e in edges)


class ServeMetrics:
    """Counters and histograms of one server; `text()` is the body of GET /metrics."""

    def __init__(self, max_batch: int, queue_depth: Callable[[], int], provider: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "cnnspec_serve_requests", "HTTP requests answered, by path and status code", ["path", "status"], registry=r
        )
        self.latency = Histogram(
            "cnnspec_serve_request_seconds",
            "Time from a POST /predict request's arrival to its answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "cnnspec_serve_batch_size", "Images per model call", buckets=batch_buckets(max_batch), registry=r
        )
        self.batch_seconds = Histogram(
            "cnnspec_serve_batch_seconds", "Time of one model call", buckets=LATENCY_BUCKETS, registry=r
        )
        self.images = Counter("cnnspec_serve_images", "Images classified", registry=r)
        self.errors = Counter("cnnspec_serve_errors", "Requests refused or failed, by reason", ["reason"], registry=r)
        for reason in REASONS:  # every reason is listed from the start, at 0
            self.errors.labels(reason=reason)
        depth = Gauge("cnnspec_serve_queue_depth", "Requests waiting for a batch", registry=r)
        depth.set_function(lambda: float(queue_depth()))
        info = Gauge(
            "cnnspec_serve_provider", "The onnxruntime provider running the model (1)", ["provider"], registry=r
        )
        info.labels(provider=provider).set(1)

    def request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path=path if path in PATHS else "other", status=str(status)).inc()
        if path == "/predict":
            self.latency.observe(seconds)

    def batch(self, images: int, seconds: float) -> None:
        self.batch_size.observe(images)
        self.batch_seconds.observe(seconds)
        self.images.inc(images)

    def error(self, reason: str) -> None:
        self.errors.labels(reason=reason).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
