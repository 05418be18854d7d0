"""`cnnspec serve` as a real process on a loopback port, driven over HTTP with httpx."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import onnx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cnnspec.deploy.images import load_batch
from cnnspec.deploy.predict import model_metadata
from cnnspec.deploy.session import open_session
from tests.cli_helpers import run_cli
from tests.serve._serve_helpers import Digits, Server, post_image, start_server, stop, wait_for_queue

# Logits of one image in batches of different sizes differ in the last bits (onnxruntime's kernels
# block differently): measured up to 4e-7 on these models, against 1e-4 for a wrong input.
LOGIT_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def server(digits: Digits) -> Iterator[Server]:
    started = start_server(digits.model, "--max-request-bytes", "4096")
    yield started
    stop(started)


def predict_json(model: Path, images: list[Path]) -> list[list[dict[str, object]]]:
    """`cnnspec predict MODEL IMAGES --top-k 10 --format json`: each image's top list."""
    result = run_cli("predict", str(model), *map(str, images), "--top-k", "10", "--format", "json", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    return [p["top"] for p in json.loads(result.stdout)["predictions"]]


def assert_same_top(served: list[dict[str, object]], expected: list[dict[str, object]]) -> None:
    assert [s["class"] for s in served] == [e["class"] for e in expected]
    for s, e in zip(served, expected, strict=True):
        assert s["logit"] == pytest.approx(e["logit"], abs=LOGIT_TOLERANCE)


def test_predictions_equal_cnnspec_predict(server: Server, digits: Digits) -> None:
    expected = predict_json(digits.model, digits.samples)
    with server.client() as client:
        # one request per image, all at once (the server batches them), as raw image/png bodies
        with ThreadPoolExecutor(len(digits.samples)) as pool:
            raw = list(pool.map(lambda p: post_image(client, p, top_k=10), digits.samples))
        files = [("image", (p.name, p.read_bytes(), "image/png")) for p in digits.samples]
        multipart = client.post("/predict", files=files, params={"top_k": 10})
    assert all(r.status_code == 200 for r in raw), [r.text for r in raw]
    for response, top in zip(raw, expected, strict=True):
        assert_same_top(response.json()["predictions"][0]["top"], top)
    assert multipart.status_code == 200, multipart.text
    predictions = multipart.json()["predictions"]
    assert [p["file"] for p in predictions] == [p.name for p in digits.samples]
    for prediction, top in zip(predictions, expected, strict=True):
        assert_same_top(prediction["top"], top)


def test_json_array_input_is_the_preprocessed_batch(server: Server, digits: Digits) -> None:
    session = open_session(digits.model, "cpu")
    x = load_batch(digits.samples[:3], model_metadata(session))
    expected = predict_json(digits.model, digits.samples[:3])
    with server.client() as client:
        batch = client.post("/predict", json=x.tolist(), params={"top_k": 10})
        one = client.post("/predict", json=x[0].tolist(), params={"top_k": 10})
        wrong = client.post("/predict", json=x[0, 0].tolist())
    assert batch.status_code == 200
    for prediction, top in zip(batch.json()["predictions"], expected, strict=True):
        assert_same_top(prediction["top"], top)
    assert_same_top(one.json()["predictions"][0]["top"], expected[0])
    assert wrong.status_code == 400
    assert "has shape [8, 8]; expected an array of numbers of shape [1, 8, 8]" in wrong.json()["error"]


def test_oversize_upload_is_413_before_its_body_is_read(server: Server) -> None:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # A gigabyte announced and none of it sent: only an answer from the header can come back.
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:200]
    assert "1,000,000,000 bytes" in json.loads(body)["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused once 4096 bytes have been read
        for _ in range(20):
            yield b"\0" * 1024

    with server.client() as client:
        streamed = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
        assert streamed.status_code == 413
        assert "over 4,096 bytes" in streamed.json()["error"]
        upload = client.post("/predict", files={"image": ("big.png", b"\0" * 2_000_000, "image/png")})
        assert upload.status_code == 413  # a client still sending its body reads the answer too
        assert upload.headers["connection"] == "close"
        assert client.get("/health").status_code == 200


def test_corrupt_image_is_400_with_predicts_reason(server: Server, digits: Digits, tmp_path: Path) -> None:
    data = digits.samples[0].read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    result = run_cli("predict", str(digits.model), str(truncated), "--device", "cpu")
    assert result.exit_code == 1
    reason = result.stderr.splitlines()[0].partition("Pillow can decode: ")[2]
    assert reason  # predict's own words for this file, e.g. "image file is truncated"
    with server.client() as client:
        raw = post_image(client, truncated)
        upload = client.post("/predict", files=[("image", ("truncated.png", truncated.read_bytes(), "image/png"))])
        junk = client.post("/predict", content=b"not an image", headers={"content-type": "image/jpeg"})
    assert raw.status_code == 400
    assert raw.json()["error"] == f"the request body is not an image Pillow can decode: {reason}"
    assert upload.status_code == 400
    assert upload.json()["error"] == f"upload 'truncated.png' is not an image Pillow can decode: {reason}"
    assert junk.status_code == 400
    assert "cannot identify image file" in junk.json()["error"]


def test_image_of_another_size_is_400_as_predict_says(server: Server, digits: Digits, tmp_path: Path) -> None:
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("L", (16, 16)).save(big)
    result = run_cli("predict", str(digits.model), str(big), "--device", "cpu")
    assert result.exit_code == 1
    expected = result.stderr.splitlines()[0].removeprefix(f"error: {big}")
    with server.client() as client:
        response = post_image(client, big)
    assert response.status_code == 400
    assert response.json()["error"] == f"the request body{expected}"  # " is 16×16 but the model takes 8×8 images ..."
    assert "16×16" in expected


def test_unknown_content_type_is_415(server: Server) -> None:
    with server.client() as client:
        response = client.post("/predict", content=b"1,2,3", headers={"content-type": "text/csv"})
    assert response.status_code == 415
    assert "'text/csv' is not one POST /predict takes" in response.json()["error"]


def test_health_and_metadata_say_what_runs(server: Server, digits: Digits) -> None:
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(digits.model)).metadata_props}
    with server.client() as client:
        health = client.get("/health").json()
        metadata = client.get("/metadata").json()
    assert health["status"] == "ok"
    assert health["provider"] == "CPUExecutionProvider"  # this machine has no GPU
    assert metadata["class_names"] == meta["class_names"]
    assert metadata["spec_hash"] == meta["spec_hash"]
    assert metadata["preprocessing"] == meta["preprocessing"]


def test_metrics_parse_as_prometheus_text(digits: Digits) -> None:
    server = start_server(digits.model, "--max-request-bytes", "4096")
    try:
        with server.client() as client:
            for path in digits.samples[:3]:
                assert post_image(client, path).status_code == 200
            assert client.post("/predict", content=b"junk", headers={"content-type": "image/png"}).status_code == 400
            text = client.get("/metrics").text
    finally:
        stop(server)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["path"], s.labels["status"]): s.value
        for s in families["cnnspec_serve_requests"].samples
        if s.name == "cnnspec_serve_requests_total"
    }
    assert requests[("/predict", "200")] == 3
    assert requests[("/predict", "400")] == 1
    errors = {
        s.labels["reason"]: s.value for s in families["cnnspec_serve_errors"].samples if s.name.endswith("_total")
    }
    assert errors["bad_input"] == 1 and errors["queue_full"] == 0
    batch = {s.name: s.value for s in families["cnnspec_serve_batch_size"].samples if not s.labels}
    assert batch["cnnspec_serve_batch_size_sum"] == 3  # three images classified, whatever the batches
    latency = {s.name: s.value for s in families["cnnspec_serve_request_seconds"].samples if not s.labels}
    assert latency["cnnspec_serve_request_seconds_count"] == 4


def test_queued_requests_run_as_one_batch(digits: Digits, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    server = start_server(digits.model, "--max-batch", "4", "--max-queue", "8", hold=hold)
    try:
        with server.client() as client, ThreadPoolExecutor(6) as pool:
            answers = [pool.submit(post_image, client, p) for p in digits.samples[:6]]
            wait_for_queue(server, 6)
            hold.unlink()
            assert all(a.result().status_code == 200 for a in answers)
            text = client.get("/metrics").text
    finally:
        stop(server)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    buckets = {s.labels["le"]: s.value for s in families["cnnspec_serve_batch_size"].samples if "le" in s.labels}
    assert buckets["1.0"] == 0 and buckets["2.0"] == 1 and buckets["4.0"] == 2  # batches of 4 and 2


def test_full_queue_is_503(digits: Digits, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    server = start_server(digits.model, "--max-batch", "1", "--max-queue", "1", hold=hold)
    try:
        with server.client() as client, ThreadPoolExecutor(1) as pool:
            first = pool.submit(post_image, client, digits.samples[0])
            wait_for_queue(server, 1)
            refused = post_image(client, digits.samples[1])
            hold.unlink()
            assert first.result().status_code == 200
    finally:
        stop(server)
    assert refused.status_code == 503
    assert refused.json()["error"] == "the server is busy: 1 requests are waiting already (--max-queue 1)"


def test_sigterm_answers_every_accepted_request_and_exits_0(digits: Digits, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    expected = predict_json(digits.model, digits.samples)
    server = start_server(digits.model, "--max-batch", "4", hold=hold)
    try:
        with ThreadPoolExecutor(len(digits.samples)) as pool:
            clients = [server.client() for _ in digits.samples]  # a connection each
            answers = [pool.submit(post_image, c, p, top_k=10) for c, p in zip(clients, digits.samples, strict=True)]
            wait_for_queue(server, len(digits.samples))
            server.process.send_signal(15)
            host, port = server.url.removeprefix("http://").rsplit(":", 1)
            _wait_refused(host, int(port))  # it stopped listening, with every request still queued
            time.sleep(1.0)  # and it waits for them: no grace period ends them
            assert server.process.poll() is None
            hold.unlink()
            responses = [a.result() for a in answers]
            for c in clients:
                c.close()
        status = server.process.wait(timeout=60)
    finally:
        stop(server)
    assert [r.status_code for r in responses] == [200] * len(digits.samples)
    for response, top in zip(responses, expected, strict=True):
        assert_same_top(response.json()["predictions"][0]["top"], top)
    assert status == 0, server.output()
    assert "stopped: answered every request it had received" in server.output()


def _wait_refused(host: str, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=5).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.02)
    pytest.fail("the server still accepts connections after SIGTERM")


def test_model_without_cnnspec_metadata_is_refused_at_start(digits: Digits, tmp_path: Path) -> None:
    model = onnx.load(str(digits.model))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    result = run_cli("serve", str(bare), "--port", "0")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: {bare} has no cnnspec metadata (input_shape, class_names)"


def test_port_in_use_is_one_line(digits: Digits) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", str(digits.model), "--port", str(port), "--device", "cpu")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: cannot listen on 127.0.0.1:{port}: the port is in use"


def test_client_errors_do_not_stop_the_server(server: Server) -> None:
    with server.client() as client:
        answers = [
            client.post("/predict", content=b"[[[", headers={"content-type": "application/json"}),
            client.post("/predict", json={"not": "an array"}),
            client.post("/predict", params={"top_k": "0"}, content=b"x", headers={"content-type": "image/png"}),
            client.post("/predict", files={"text": (None, "no file")}),
        ]
        assert [a.status_code for a in answers] == [400] * 4
        assert client.get("/health").status_code == 200
    assert httpx.get(f"{server.url}/nothing").status_code == 404


def test_cuda_asked_for_where_it_cannot_run_is_refused_at_start(digits: Digits) -> None:
    from cnnspec.deploy.session import cuda_device_present

    if cuda_device_present():
        pytest.skip("a CUDA device is visible on this machine")
    # --conv-algo too: the provider's settings reach the session, which onnxruntime builds on the CPU here.
    result = run_cli("serve", str(digits.model), "--port", "0", "--device", "cuda", "--conv-algo", "heuristic")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line == (
        f"{digits.model}: error: CUDAExecutionProvider was requested but onnxruntime fell back to "
        "CPUExecutionProvider (no CUDA device is visible); refusing to run on the CPU as if it were the GPU "
        "(use --device cpu or auto)"
    )


@pytest.mark.gpu
def test_health_reports_the_cuda_provider_on_a_gpu(digits: Digits) -> None:
    server = start_server(digits.model, "--device", "cuda")
    try:
        with server.client() as client:
            health = client.get("/health").json()
            answer = post_image(client, digits.samples[0])
    finally:
        stop(server)
    assert health["provider"] == "CUDAExecutionProvider"
    assert answer.json()["provider"] == "CUDAExecutionProvider"


def test_out_of_range_options_are_shown_as_written(digits: Digits) -> None:
    result = run_cli("serve", str(digits.model), "--port", "0", "--max-batch", "1000000000")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: --max-batch 1,000,000,000 is out of range: it takes 1 to 65,536"


def test_an_ipv6_host_in_brackets_is_the_address(digits: Digits) -> None:
    try:
        taken = socket.socket(socket.AF_INET6)
        taken.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with taken:
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", str(digits.model), "--host", "[::1]", "--port", str(port), "--device", "cpu")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: cannot listen on [::1]:{port}: the port is in use"
