"""--storage that cannot be opened: a located one-line error, exit 1, never a traceback or the password."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tests.sweep._helpers import write_spec


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("garbage://x", "Can't load plugin"),
        ("notaurl", "Could not parse"),
        ("postgresql+psycopg2://u:hunter2@127.0.0.1:PORT/x", "Connection refused"),  # PORT: closed, found per test
        ("sqlite:////nonexistent-cnnspec/dir/x.db", "unable to open database file"),
    ],
)
def test_a_storage_that_cannot_be_opened_is_a_user_error(tmp_path: Path, url: str, found: str) -> None:
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg2")
        # Found when the test runs, not when it is collected: pytest-xdist's workers must collect the same ids.
        url = url.replace("PORT", str(_closed_port()))
    result = run_cli("sweep", str(write_spec(tmp_path)), "--out", str(tmp_path / "sw"), "--storage", url)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "cannot open the storage" in result.output and found in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_storage_is_refused(tmp_path: Path, url: str) -> None:
    result = run_cli("sweep", str(write_spec(tmp_path)), "--out", str(tmp_path / "sw"), "--storage", url)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "in-memory SQLite database" in result.output
    assert not (tmp_path / "sw").exists()


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    """RLIMIT_FSIZE 0 fails every write with EFBIG, as a full disk fails them with ENOSPC."""
    import os
    import resource
    import signal
    import subprocess
    import sys

    def no_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of ending the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    spec = write_spec(tmp_path)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "cnnspec", "sweep", str(spec), "--out", str(tmp_path / "sw")],
        env={**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        preexec_fn=no_writes,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "cannot write" in done.stderr, done.stderr


def test_more_workers_than_the_machine_can_run_is_refused(tmp_path: Path) -> None:
    result = run_cli("sweep", str(write_spec(tmp_path)), "--out", str(tmp_path / "sw"), "--workers", "100000")
    assert result.exit_code == 1, result.output
    assert "local workers (4 a CPU core)" in result.output
    assert not (tmp_path / "sw").exists()
