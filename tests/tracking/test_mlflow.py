"""train.loggers: [mlflow]: read back with MlflowClient from the default store, a real `mlflow server`, and
a server that is down (training finishes, one warning)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import cnnspec
from tests.tracking._helpers import Lines, records, result, spec_file, train

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient


def the_run(client: MlflowClient, experiment: str = "digits-fast"):  # type: ignore[no-untyped-def]
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    (run,) = client.search_runs([found.experiment_id])
    return run


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mlflow")
    lines = Lines()
    out = train(spec_file(folder), folder / "runs" / "first", "train.loggers=[mlflow]", reporter=lines)
    assert lines.warnings() == []
    return out


def test_the_default_store_is_sqlite_beside_the_run(local: Path) -> None:
    assert (local.parent / "mlflow.db").is_file()
    run = the_run(MlflowClient(f"sqlite:///{local.parent / 'mlflow.db'}"))
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "first"
    assert run.data.tags["cnnspec.run_dir"] == str(local.resolve())


def test_params_metrics_and_artifacts(local: Path) -> None:
    client = MlflowClient(f"sqlite:///{local.parent / 'mlflow.db'}")
    run = the_run(client)
    assert run.data.params["optimizer.lr"] == "0.05"
    assert run.data.params["data.augment.0.random_crop.size"] == "8"
    assert run.data.params["model.input.height"] == "8"
    (epoch,) = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert (epoch.step, epoch.value) == (1, pytest.approx(records(local)[0]["val_accuracy"], rel=1e-9))
    assert run.data.metrics["test_accuracy"] == pytest.approx(result(local)["test_accuracy"], rel=1e-9)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"spec.yaml", "result.json", "curves.png", "confusion_matrix.png"} <= names
    assert (local.parent / "mlartifacts").is_dir()  # the default store's artifacts, beside it


def test_a_resume_continues_the_same_mlflow_run(local: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "runs" / "again"
    shutil.copytree(local, copy, ignore=shutil.ignore_patterns("tensorboard"))
    cnnspec.train(resume=copy, overrides=["train.epochs=2", "train.mlflow.experiment=resumed"], progress=False)
    client = MlflowClient(f"sqlite:///{copy.parent / 'mlflow.db'}")
    # The copy's store (beside it) had no MLflow run of it: the first resume made one, from epoch 2 on.
    run = the_run(client, "resumed")
    cnnspec.train(resume=copy, overrides=["train.epochs=3", "train.mlflow.experiment=resumed"], progress=False)
    again = the_run(client, "resumed")  # still one run: the second resume found it by its run directory
    assert again.info.run_id == run.info.run_id
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert steps == [2, 3]
    assert again.info.status == "FINISHED"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    # fmt: off
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "art"),
    ]
    # fmt: on
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded 2-core machine takes ~35 s to start it
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its worker: the group the test started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_logs_to_a_real_mlflow_server(server: str, tmp_path: Path) -> None:
    lines = Lines()
    out = train(
        spec_file(tmp_path),
        tmp_path / "run",
        "train.loggers=[mlflow]",
        f"train.mlflow.tracking_uri={server}",
        "train.mlflow.experiment=on-a-server",
        reporter=lines,
    )
    assert lines.warnings() == []
    client = MlflowClient(server)
    run = the_run(client, "on-a-server")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val_accuracy"] == pytest.approx(records(out)[0]["val_accuracy"], rel=1e-9)
    assert "spec.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert not (tmp_path / "mlflow.db").exists()  # nothing in the default store


def test_a_server_that_is_down_warns_once_and_training_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own setting: fail at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    lines = Lines()
    out = train(
        spec_file(tmp_path),
        tmp_path / "run",
        "train.loggers=[mlflow, tensorboard]",
        f"train.mlflow.tracking_uri=http://127.0.0.1:{free_port()}",  # nobody listens there
        reporter=lines,
    )
    (warning,) = lines.warnings()
    assert warning.startswith("warning: mlflow logging failed (")
    assert warning.endswith("training goes on without it")
    assert result(out)["epochs"] == 1  # trained to the end, result.json written
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))  # the other logger went on
