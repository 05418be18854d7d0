"""`cnnspec serve` under load: dynamic batching against --max-batch 1.

    python benchmarks/serve.py                                  # SmallCNN, 1/8/32 clients, 40 requests each, 3 rounds
    python benchmarks/serve.py --spec specs/digits.yaml --requests 100 --markdown

The model is an untrained run of the spec (cnnspec.rundir.untrained.init_run: speed does not depend on
the weight values), exported through the full gate. Each mode has its own `cnnspec serve` process on a
free loopback port, both started at once and loaded in turn, level by level, `--rounds` times (so a change
in what else runs on the machine falls on both alike); for each client count, every client sends its
requests one after another on its own keep-alive connection (a PNG of the size training stores, raw
image/png body). Every level is bounded in count (--requests per client) and in time (--level-seconds;
a level that runs out reports what it finished). Reported: throughput (answers per second over the
level's wall time) and the median and 99th-percentile latency of a request; then, per client count,
batching ÷ --max-batch 1 for throughput and for p99. The goal at 32 clients: ≥ 3× the throughput at no worse p99.

The clients speak HTTP/1.1 over asyncio streams themselves rather than through httpx: on a small
machine the load generator shares the cores with the server, and httpx's per-request cost (several
times that of these few lines) would be measured as the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = (1, 8, 32)
GOAL_THROUGHPUT = 3.0
READY = re.compile(r" at http://([^ :]+):(\d+) on ")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    load = ", load average " + " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return f"CPU: {cpu_name()}, {os.cpu_count()} cores{load}"


def export_model(spec: Path, folder: Path) -> tuple[Path, bytes]:
    """An untrained run of `spec`, exported; and one PNG of the size its training stores."""
    from PIL import Image

    from cnnspec.deploy.exporter import export_run
    from cnnspec.rundir.untrained import init_run

    report = export_run(init_run(spec, folder / "run"))
    pre = report.metadata.preprocessing
    assert pre is not None
    h, w = pre.image_size
    rng = np.random.default_rng(0)
    shape = (h, w) if pre.channels == 1 else (h, w, 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buffer, format="PNG")
    return report.path, buffer.getvalue()


@dataclass
class Level:
    clients: int
    answered: int
    seconds: float
    latencies: list[float]  # seconds
    failed: int

    @property
    def throughput(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


class ServerProcess:
    """`cnnspec serve MODEL --port 0 ARGS` on loopback, until `close`."""

    def __init__(self, model: Path, args: list[str]) -> None:
        command = [sys.executable, "-m", "cnnspec", "serve", str(model), "--port", "0", *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        found = threading.Event()
        self.address: tuple[str, int] | None = None

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                match = READY.search(line)
                if match and self.address is None:
                    self.address = (match.group(1), int(match.group(2)))
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(120) or self.address is None:
            self.close()
            raise SystemExit("cnnspec serve did not start:\n" + "".join(self.lines))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def request_bytes(host: str, body: bytes) -> bytes:
    head = (
        f"POST /predict?top_k=1 HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def one_client(address: tuple[str, int], payload: bytes, count: int, deadline: float, level: Level) -> None:
    reader, writer = await asyncio.open_connection(*address)
    try:
        for _ in range(count):
            if time.perf_counter() > deadline:
                return
            started = time.perf_counter()
            writer.write(payload)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            if status == 200:
                level.latencies.append(time.perf_counter() - started)
                level.answered += 1
            else:
                level.failed += 1
    finally:
        writer.close()


async def load(address: tuple[str, int], payload: bytes, clients: int, count: int, seconds: float) -> Level:
    level = Level(clients, 0, 0.0, [], 0)
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(one_client(address, payload, count, deadline, level) for _ in range(clients)))
    level.seconds = time.perf_counter() - started
    return level


def run_modes(
    model: Path, modes: dict[str, list[str]], payload: bytes, requests: int, seconds: float, rounds: int
) -> dict[str, list[Level]]:
    """Every mode's server started at once and loaded in turn (A1 B1 A8 B8 A32 B32, `rounds` times), so a
    change in what else runs on the machine falls on both modes alike; each level pools its rounds."""
    servers = {name: ServerProcess(model, args) for name, args in modes.items()}
    try:
        pooled = {name: [Level(c, 0, 0.0, [], 0) for c in CLIENTS] for name in modes}
        for server in servers.values():  # warm-up: threads, first batches
            assert server.address is not None
            asyncio.run(load(server.address, request_bytes(server.address[0], payload), 4, 10, seconds))
        for _ in range(rounds):
            for i, clients in enumerate(CLIENTS):
                for name, server in servers.items():
                    assert server.address is not None
                    data = request_bytes(server.address[0], payload)
                    level = asyncio.run(load(server.address, data, clients, requests, seconds))
                    total = pooled[name][i]
                    total.answered += level.answered
                    total.seconds += level.seconds
                    total.latencies += level.latencies
                    total.failed += level.failed
        return pooled
    finally:
        for server in servers.values():
            server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "small_cnn.yaml")
    parser.add_argument("--requests", type=int, default=40, help="requests per client and level (at most 1000)")
    parser.add_argument("--level-seconds", type=float, default=60.0, help="time limit of one level (at most 600)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, help="the servers' onnxruntime intra-op threads (default: one per core)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="times each level runs, alternating the modes (at most 10)"
    )
    parser.add_argument("--markdown", action="store_true")
    options = parser.parse_args()
    requests = max(1, min(options.requests, 1000))
    seconds = max(1.0, min(options.level_seconds, 600.0))
    rounds = max(1, min(options.rounds, 10))
    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        model, payload = export_model(options.spec, Path(folder))
        threads = f"{options.threads} onnxruntime threads" if options.threads else "onnxruntime's default threads"
        print(
            f"model: {options.spec.name}, PNG body {len(payload)} bytes, {requests} requests per client, "
            f"{rounds} rounds, {threads}"
        )
        modes = {
            "batching (--max-batch 32)": ["--max-batch", "32", "--max-wait-ms", f"{options.max_wait_ms:g}"],
            "--max-batch 1": ["--max-batch", "1", "--max-wait-ms", "0"],
        }
        extra = ["--threads", str(options.threads)] if options.threads else []
        modes = {name: [*args, *extra] for name, args in modes.items()}
        results = run_modes(model, modes, payload, requests, seconds, rounds)
    header = ["mode", "clients", "answered", "req/s", "p50 ms", "p99 ms", "refused"]
    rows = [
        [
            name,
            str(lv.clients),
            str(lv.answered),
            f"{lv.throughput:,.0f}",
            f"{lv.percentile(50):.1f}",
            f"{lv.percentile(99):.1f}",
            str(lv.failed),
        ]
        for name, levels in results.items()
        for lv in levels
    ]
    print_rows(header, rows, options.markdown)
    batched, single = results.values()
    print()
    ratio_rows = []
    for b, s in zip(batched, single, strict=True):
        tput = b.throughput / s.throughput if s.throughput else float("nan")
        p99 = b.percentile(99) / s.percentile(99)
        ratio_rows.append([str(b.clients), f"{tput:.2f}×", f"{p99:.2f}×"])
    print_rows(
        ["clients", "throughput batching ÷ max-batch 1", "p99 batching ÷ max-batch 1"], ratio_rows, options.markdown
    )
    b32, s32 = batched[-1], single[-1]
    ratio = b32.throughput / s32.throughput if s32.throughput else float("nan")
    met = ratio >= GOAL_THROUGHPUT and b32.percentile(99) <= s32.percentile(99)
    print(
        f"\ngoal at 32 clients: >= {GOAL_THROUGHPUT:g}x throughput at no worse p99: "
        f"{'met' if met else 'not met'} ({ratio:.2f}x)"
    )


def print_rows(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


if __name__ == "__main__":
    main()
