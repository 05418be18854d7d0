"""Two sweep workers on one study in a real PostgreSQL server, started by the test on loopback; one killed."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sweep._helpers import write_spec
from tests.sweep.test_workers import assert_whole, sweep_process, wait_for_a_trial_in_training

pytestmark = pytest.mark.slow


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as the `postgres` user."""
    if os.geteuid() != 0:
        return argv
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl; .ci/run installs it with apt-get)")
    pytest.importorskip("psycopg2", reason="psycopg2 (the sweep extra) is not installed")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
    # Not under pytest's temp folder: its parents are root's alone (0700), closed to the server's user.
    root = Path(tempfile.mkdtemp(prefix="cnnspec-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    init = _as_server_user([initdb, "-D", str(data), "-A", "trust", "-U", "cnnspec"])
    subprocess.run(init, check=True, capture_output=True)
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
    start = _as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"])
    subprocess.run(start, check=True, capture_output=True)
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="cnnspec", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE sweep")
        conn.close()
        yield f"postgresql+psycopg2://cnnspec@127.0.0.1:{port}/sweep"  # the driver named: psycopg2
    finally:
        subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)  # made above


def test_two_workers_share_one_study_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    spec, out = write_spec(tmp_path, trials=6), tmp_path / "sw"
    proc = sweep_process(spec, out, "--workers", "2", "--storage", postgres_url)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "[worker 0]" in output and "[worker 1]" in output
    assert not (out / "study.db").exists()  # the study is in PostgreSQL
    found = assert_whole(out, 6, storage=postgres_url)
    assert len(found) <= 7


def test_a_worker_killed_mid_trial_on_postgres_leaves_its_trial_failed(tmp_path: Path, postgres_url: str) -> None:
    from optuna.trial import TrialState

    spec, out = write_spec(tmp_path, trials=6, epochs=4), tmp_path / "sw"
    proc = sweep_process(spec, out, "--workers", "2", "--storage", postgres_url)
    victim = wait_for_a_trial_in_training(proc, out, postgres_url)
    os.kill(victim, signal.SIGKILL)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "worker 0 ended with signal 9" in output or "worker 1 ended with signal 9" in output, output
    found = assert_whole(out, 6, storage=postgres_url)
    killed = [t for t in found if t.user_attrs.get("worker") == f"{socket.gethostname()}:{victim}"]
    assert killed, output  # the victim had started a trial
    unfinished = [t for t in killed if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(unfinished) == 1, [(t.number, t.state) for t in killed]  # the one it was training
    assert unfinished[0].state == TrialState.FAIL
