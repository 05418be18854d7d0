"""`cnnspec serve` against hostile clients (issue 19): decompression bombs, stalled and abandoned uploads,
SIGTERM with a client stalled mid-body, and a second Ctrl-C. A real server process on loopback, real sockets.

No wall-clock assertion: each wait has a generous bound (60 s) that only a hang can exceed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.serve._serve_helpers import (
    ROOT,
    Digits,
    Server,
    env_for,
    post_image,
    start_server,
    stop,
    wait_for_queue,
)

WAIT = 60  # seconds: only a hang takes longer


def one_bit_png(side: int) -> bytes:
    """A side×side 1-bit PNG: a few KB of file, side² pixels once decoded."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, format="PNG")
    return out.getvalue()


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def headers(length: int) -> bytes:
    return (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def read_answer(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def wait_for_output(server: Server, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while text not in server.output():
        if time.monotonic() > deadline:
            pytest.fail(f"the server never said {text!r}:\n{server.output()}")
        time.sleep(0.05)


def test_a_decompression_bomb_is_refused_from_its_header(digits: Digits) -> None:
    # 179.56 and 81 megapixels, a few KB each: over and under cnnspec's one limit (178,956,970)
    bomb, large = one_bit_png(13_400), one_bit_png(9_000)
    assert len(bomb) < 64_000
    server = start_server(digits.model)
    try:
        with server.client() as client:
            answers = [client.post("/predict", content=bomb, headers={"content-type": "image/png"})]
            answers.append(client.post("/predict", content=large, headers={"content-type": "image/png"}))
            health = client.get("/health").status_code
    finally:
        stop(server)
    assert answers[0].status_code == 413, answers[0].text
    assert "179560000 pixels" in answers[0].json()["error"], answers[0].text
    assert "at most 178,956,970 pixels" in answers[0].json()["hint"], answers[0].text
    # digits was trained without resizing: another size is predict's 400, said before decoding
    assert answers[1].status_code == 400
    assert answers[1].json()["error"].startswith("the request body is 9000×9000 but the model takes 8×8 images")
    assert health == 200
    assert "DecompressionBombWarning" not in server.output() and "Traceback" not in server.output()


# Run in a fresh interpreter, so that its peak memory (ru_maxrss) is this decode's alone.
_DECODE = """
import dataclasses, resource, sys
from cnnspec.deploy.images import decode_bytes
from cnnspec.deploy.predict import model_metadata
from cnnspec.deploy.session import open_session
from cnnspec.errors import DataError
meta = model_metadata(open_session(sys.argv[1], "cpu"))
pre = meta.image_preprocessing()
resizing = dataclasses.replace(
    meta, preprocessing=dataclasses.replace(pre, resize=True), resize=list(pre.image_size)
)  # as if trained with data.resize: any image size is decoded, then resized
data = open(sys.argv[2], "rb").read()
for m in (meta, resizing):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        decode_bytes(data, m, "bomb.png")
        print("decoded", 0)
    except DataError as exc:
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB
        print(type(exc).__name__, grown, exc.diagnostics[0].message)
"""


def test_the_pixel_cap_is_checked_before_a_pixel_is_decoded(digits: Digits, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(one_bit_png(13_400))  # 179.56 M pixels: 180 MB as grey, 539 MB as RGB once decoded
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _DECODE, str(digits.model), str(bomb)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    fixed, resized = (line.split(" ", 2) for line in proc.stdout.splitlines())
    # Over the limit, Pillow refuses it from the header whatever the model (before its size is compared).
    for refused in (fixed, resized):
        assert refused[0] == "ImageTooLarge"
        assert refused[2].startswith("bomb.png is refused: Image size (179560000 pixels) exceeds limit of 178956970")
    # Decoding would have grown the peak by ≥ 180 MB (the grey conversion alone); the header costs nothing.
    assert int(fixed[1]) < 40_000 and int(resized[1]) < 40_000, proc.stdout


def test_a_stalled_body_is_408_and_stalled_headers_are_closed(digits: Digits) -> None:
    server = start_server(digits.model, "--read-timeout", "1")
    try:
        with socket.create_connection(address(server), timeout=WAIT) as sock:
            sock.sendall(headers(1000) + b"\x89PNG")  # 4 bytes of 1,000, then nothing
            answer = read_answer(sock)
        with socket.create_connection(address(server), timeout=WAIT) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # the headers never end
            closed = read_answer(sock)
        with server.client() as client:
            assert client.get("/health").status_code == 200
    finally:
        stop(server)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json.loads(body)["error"] == "the request body did not arrive within 1 s (--read-timeout): 4 bytes read"
    assert closed == b""  # the server closed the connection without an answer


def test_a_client_leaving_mid_upload_is_one_log_line(digits: Digits) -> None:
    server = start_server(digits.model)
    try:
        for _ in range(3):
            with socket.create_connection(address(server), timeout=WAIT) as sock:
                sock.sendall(headers(1000) + b"\0" * 500)
        deadline = time.monotonic() + WAIT
        while server.output().count("disconnected before") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        with server.client() as client:
            assert client.get("/health").status_code == 200
    finally:
        stop(server)
    lines = [line for line in server.output().splitlines() if "disconnected" in line]
    assert len(lines) == 3 and lines[0].endswith("disconnected before its request body arrived (500 bytes read)")
    assert "Traceback" not in server.output() and "ClientDisconnect" not in server.output()


def test_sigterm_cuts_a_stalled_upload_after_the_grace_and_answers_the_rest(digits: Digits, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    # --read-timeout 600: only the shutdown grace (1 s) can end the stalled upload within WAIT
    server = start_server(digits.model, "--read-timeout", "600", "--shutdown-grace", "1", hold=hold)
    try:
        with server.client() as client, ThreadPoolExecutor(1) as pool:
            received = pool.submit(post_image, client, digits.samples[0])
            wait_for_queue(server, 1)  # fully received, waiting for its batch
            with socket.create_connection(address(server), timeout=WAIT) as stalled:
                stalled.sendall(headers(1000) + b"\x89PNG")
                time.sleep(0.2)  # let the server take the connection before the signal
                server.process.send_signal(signal.SIGTERM)
                hold.unlink()
                answer = read_answer(stalled)
            assert received.result().status_code == 200
        status = server.process.wait(timeout=WAIT)
    finally:
        stop(server)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    assert "the server is shutting down" in json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert status == 0, server.output()
    assert (
        "stopped: answered every request it had received; 1 request whose body was still arriving 1 s into the "
        "shutdown was answered 503" in server.output()
    )
    assert "Traceback" not in server.output()


def test_a_second_ctrl_c_stops_at_once_and_says_what_it_left(digits: Digits, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()  # never removed: the queued requests can only end by the second Ctrl-C
    server = start_server(digits.model, hold=hold)
    try:
        clients = [server.client() for _ in range(2)]
        with ThreadPoolExecutor(2) as pool:
            queued = [pool.submit(post_image, c, p) for c, p in zip(clients, digits.samples, strict=False)]
            wait_for_queue(server, 2)
            server.process.send_signal(signal.SIGINT)
            time.sleep(0.5)  # the first Ctrl-C's shutdown begins (it is not asserted; the second ends it)
            server.process.send_signal(signal.SIGINT)
            status = server.process.wait(timeout=WAIT)
            answers = [q.result() for q in queued]
        for c in clients:
            c.close()
    finally:
        stop(server)
    assert status == 130, server.output()
    assert [a.status_code for a in answers] == [503, 503]
    assert all("stopped (a second Ctrl-C)" in a.json()["error"] for a in answers)
    out = server.output()
    assert "interrupted again: stopped without waiting; 2 requests it had accepted were cut off unanswered" in out
    assert "Traceback" not in out and "CancelledError" not in out and "answered every request" not in out


# --- models whose real output disagrees with their metadata, JSON beyond float32, a non-UTF-8 name ------


def test_a_model_whose_real_output_width_is_not_its_class_count_is_refused_at_start(tmp_path: Path) -> None:
    from tests.reliability._deploy_models import lying_model

    model = tmp_path / "lie.onnx"
    onnx.save(lying_model(3), str(model))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "serve", str(model), "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env_for(),
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=WAIT)  # refused at start: it never listens
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"cnnspec serve started serving the model:\n{proc.communicate()[1]}")
    assert proc.returncode == 1, stderr
    assert "returned 3 logits per image, but its metadata names 2 classes" in stderr
    assert "Traceback" not in stderr and "serving" not in stderr


def _array(value: float) -> str:
    return json.dumps(np.full((3, 16, 16), value, dtype=np.float64).tolist())


def test_wrong_output_widths_are_500_and_json_beyond_float32_is_400(tmp_path: Path) -> None:
    from tests.reliability._deploy_models import switching_model

    model = tmp_path / "switch.onnx"
    onnx.save(switching_model(), str(model))  # 2 columns for a dark input (the start-up probe), 3 for a bright one
    server = start_server(model)
    json_type = {"content-type": "application/json"}
    try:
        with server.client() as client:
            dark = client.post("/predict", content=_array(0.0), headers=json_type)
            bright = client.post("/predict", content=_array(1.0), headers=json_type)
            huge = [
                client.post("/predict", content=_array(0.0).replace("0.0", text, 1), headers=json_type)
                for text in ("1e39", "-1e39", "1e400")
            ]
            largest = client.post("/predict", content=_array(0.0).replace("0.0", "-3.4e38", 1), headers=json_type)
            health = client.get("/health").status_code
    finally:
        stop(server)
    assert dark.status_code == 200 and [s["class"] for s in dark.json()["predictions"][0]["top"]] == ["cat", "dog"]
    assert bright.status_code == 500, bright.text
    assert "returned 3 logits per image, but its metadata names 2 classes" in bright.json()["error"]
    for answer, shown in zip(huge, ("1e+39", "-1e+39", "inf"), strict=True):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith(f"the JSON array holds {shown} at [0, 0, 0, 0]: values must be"), (
            answer.text
        )
    assert largest.status_code == 200, largest.text  # within float32's range: taken
    assert health == 200
    assert "RuntimeWarning" not in server.output() and "Traceback" not in server.output(), server.output()


def test_a_model_file_named_in_bytes_that_are_not_utf8_is_served(tmp_path: Path) -> None:
    from tests.reliability._deploy_models import switching_model

    raw = os.fsencode(tmp_path) + b"/m\xfe.onnx"
    onnx.save(switching_model(), os.fsdecode(raw))
    server = start_server(Path(os.fsdecode(raw)))
    try:
        with server.client() as client:
            answer = client.post("/predict", content=_array(0.0), headers={"content-type": "application/json"})
            wrong = client.post("/predict", content=_array(1.0), headers={"content-type": "application/json"})
            health = client.get("/health").json()
    finally:
        stop(server)
    assert answer.status_code == 200, answer.text
    assert health["model"].endswith("/m\\xfe.onnx"), health  # its bytes, escaped: JSON holds only UTF-8
    assert wrong.status_code == 500 and "/m\\xfe.onnx returned 3 logits" in wrong.json()["error"], wrong.text
    assert "incompatible" not in server.output() and "Traceback" not in server.output(), server.output()
