"""A real `cnnspec serve` process on a loopback port, and a digits model to serve.

The server is started as `python -m cnnspec serve MODEL --port 0` (this checkout on PYTHONPATH): the OS
picks a free port and the server's ready line on stderr names it. Tests talk to it with httpx.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r" at (http://[^ ]+) on ")
START_SECONDS = 60  # onnxruntime, numpy and starlette imported on a loaded 2-core machine


@dataclass
class Digits:
    """A digits run trained for 1 epoch, its export and its sample images."""

    run: Path
    model: Path
    samples: list[Path]


def train_digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    import cnnspec

    run = cnnspec.train(
        ROOT / "specs" / "digits.yaml",
        tmp_path_factory.mktemp("digits") / "run",
        overrides=["train.epochs=1"],
        progress=False,
    )
    model = cnnspec.export(run)
    return Digits(run, model, sorted((run / "samples").glob("*.png")))


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    stderr: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def terminate(self) -> int:
        """SIGTERM, then the exit status (waiting at most 60 s)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def output(self) -> str:
        return "".join(self.stderr)


def env_for(hold: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CNNSPEC_SERVE_HOLD", None)
    if hold is not None:
        env["CNNSPEC_SERVE_HOLD"] = str(hold)
    return env


def start_server(model: Path, *args: str, hold: Path | None = None) -> Server:
    """`cnnspec serve MODEL --port 0 ARGS`, once /health answers 200."""
    command = [sys.executable, "-m", "cnnspec", "serve", str(model), "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env_for(hold))
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = READY.search(line)
            if match and not url:
                url.append(match.group(1))
                found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(START_SECONDS) or not url:
        process.kill()
        process.wait()
        pytest.fail(f"cnnspec serve did not start:\n{''.join(lines)}")
    server = Server(process, url[0], lines)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if httpx.get(f"{server.url}/health", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"cnnspec serve never answered /health:\n{server.output()}")
        time.sleep(0.05)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def wait_for_queue(server: Server, depth: int) -> None:
    """Until /health reports `depth` requests waiting (at most 60 s)."""
    deadline = time.monotonic() + 60
    with server.client() as client:
        while client.get("/health").json()["queue"] != depth:
            if time.monotonic() > deadline:
                pytest.fail(f"the queue never held {depth} requests:\n{server.output()}")
            time.sleep(0.02)


def post_image(client: httpx.Client, path: Path, **params: str | int | float | bool | None) -> httpx.Response:
    return client.post("/predict", content=path.read_bytes(), headers={"content-type": "image/png"}, params=params)
