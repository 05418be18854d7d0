"""A small Language Server Protocol client over stdio, for driving the real yaml-language-server.

JSON-RPC messages framed by `Content-Length` headers (the LSP base protocol): requests get their
response, notifications none; the server's own requests (workspace/configuration,
client/registerCapability, window/workDoneProgress/create) are answered as an editor would.
Every wait is bounded: past its timeout it fails with the messages received so far and the
tail of the server's stderr, never hangs.

Hand-written (about a hundred lines) rather than pygls or sansio-lsp-client: the tests need
framing, request ids and a bounded wait, nothing else, and a dev dependency for that would be
one more install for every CI run.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# The release the editor tests are written against; .ci/run installs it where it is missing.
YLS_VERSION = "2.0.0"
YLS_PREFIX = Path.home() / ".cache" / "cnnspec-yls"
INSTALL = f"npm install --prefix ~/.cache/cnnspec-yls yaml-language-server@{YLS_VERSION}"
ENV_VAR = "CNNSPEC_YAML_LANGUAGE_SERVER"  # the server's executable, where it is installed elsewhere
TIMEOUT = 60.0  # seconds for any one answer: far above the ~1 s the server takes on a busy 2-core machine


def find_server() -> tuple[str | None, str]:
    """The yaml-language-server executable (from $CNNSPEC_YAML_LANGUAGE_SERVER, the cache prefix .ci/run
    installs into, or PATH), or None with the reason it is not there."""
    if shutil.which("node") is None:
        return None, f"node is not installed (yaml-language-server runs on it); then {INSTALL}"
    named = os.environ.get(ENV_VAR)
    if named:
        return (named, "") if Path(named).is_file() else (None, f"${ENV_VAR} names {named}, which does not exist")
    cached = YLS_PREFIX / "node_modules" / ".bin" / "yaml-language-server"
    if cached.is_file():
        return str(cached), ""
    found = shutil.which("yaml-language-server")
    if found:
        return found, ""
    return None, f"yaml-language-server not installed: {INSTALL}"


class ServerError(AssertionError):
    """The server did not answer as expected: what was asked, what came back."""


class LanguageClient:
    """One language server process, spoken to over its stdin and stdout."""

    def __init__(self, command: list[str], settings: dict[str, Any]):
        self.settings = settings
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[bytes] = []
        self.received: list[dict[str, Any]] = []  # every message, in order
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}  # the latest published, by document URI
        self._next_id = 0
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.process.stderr,), daemon=True).start()

    # --- the wire -------------------------------------------------------------------------------
    def _read(self, stream: IO[bytes]) -> None:
        while True:
            length = None
            while True:  # headers, up to the blank line
                line = stream.readline()
                if not line:
                    self._inbox.put(None)
                    return
                line = line.strip()
                if not line:
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if length is None:
                continue
            self._inbox.put(json.loads(stream.read(length)))

    def _drain(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._stderr.append(line)

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    # --- what the client says -------------------------------------------------------------------
    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float = TIMEOUT) -> Any:
        self._next_id += 1
        ident = self._next_id
        self._send({"id": ident, "method": method, "params": params})
        answer = self.wait_for(lambda m: m.get("id") == ident and "method" not in m, f"the answer to {method}", timeout)
        if "error" in answer:
            raise ServerError(f"{method} failed: {answer['error']}")
        return answer.get("result")

    def wait_for(self, done: Callable[[dict[str, Any]], bool], what: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Handle messages until one satisfies `done`; fail after `timeout` seconds with what came."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerError(f"no {what} within {timeout:g} s\n{self.transcript()}")
            try:
                message = self._inbox.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if message is None:
                raise ServerError(f"the server exited waiting for {what}\n{self.transcript()}")
            self.received.append(message)
            self._answer(message)
            if done(message):
                return message

    def published(self, uri: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """The diagnostics published for `uri` (waiting for the first publication)."""
        if uri not in self.diagnostics:
            self.wait_for(
                lambda m: m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri,
                f"diagnostics for {uri}",
                timeout,
            )
        return self.diagnostics[uri]

    def _answer(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method == "textDocument/publishDiagnostics":
            self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
        if method is None or "id" not in message:
            return
        result: Any = None
        if method == "workspace/configuration":  # the settings of each section asked for
            result = [self.settings.get(item.get("section", "")) for item in message["params"]["items"]]
        self._send({"id": message["id"], "result": result})

    def transcript(self, last: int = 20) -> str:
        lines = [f"received ({len(self.received)} messages, the last {last}):"]
        lines += [json.dumps(m)[:600] for m in self.received[-last:]]
        lines.append("stderr: " + b"".join(self._stderr[-20:]).decode("utf-8", "replace"))
        return "\n".join(lines)

    def close(self) -> None:
        """shutdown, then exit; killed if it has not ended 10 s later."""
        try:
            if self.process.poll() is None:
                self.request("shutdown", None, timeout=10)
                self.notify("exit", None)
            self.process.wait(timeout=10)
        except (ServerError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
