"""Ctrl-C during `cnnspec export` (issue 14, item 18): torch.export wraps the KeyboardInterrupt in a
TorchExportError, which cnnspec used to take for an exporter failure: it fell back to the
TorchScript exporter, wrote the model and exited 0.

A real `python -m cnnspec export` process and a real SIGINT. The child runs with the test hook
CNNSPEC_TEST_STOP_IN_EXPORT=1 (cnnspec/deploy/onnx_export.py): it stops itself with SIGSTOP the
first time the dynamo exporter runs the model's forward. The test waits until it is stopped,
sends SIGINT, then SIGCONT, so the interrupt lands inside torch.export's tracing on every run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnspec.atomic import TMP_PREFIX
from cnnspec.deploy.onnx_export import to_onnx
from tests.export._export_helpers import make_run


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_stopped(proc: subprocess.Popen[str], limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the export ended (rc {proc.returncode}) before it reached the exporter")
        if _state(proc.pid) == "T":
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the export never reached the exporter's trace")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process state from /proc")
def test_ctrl_c_inside_the_dynamo_exporter_stops_with_130_and_writes_nothing(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run = make_run(tmp_path_factory, "resnet18")  # specs/resnet18.yaml, untrained
    out = tmp_path / "model.onnx"
    env = {**os.environ, "CNNSPEC_TEST_STOP_IN_EXPORT": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "export", str(run), "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_stopped(proc)
        os.kill(proc.pid, signal.SIGINT)  # pending while stopped: delivered inside the trace on SIGCONT
        os.kill(proc.pid, signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted: no ONNX file was written" in stderr
    assert not out.exists() and not (run / "model.onnx").exists()
    leftovers = [p.name for p in [*tmp_path.iterdir(), *run.iterdir()] if p.name.startswith(TMP_PREFIX)]
    assert leftovers == []
    assert "wrote" not in stdout


# Forward calls, outside the module: the exporters trace copies of it and restore its attributes.
_CALLS: list[int] = []


class _WrapsInterrupts(nn.Module):
    """A model whose first forward gets a real SIGINT and wraps the KeyboardInterrupt the way torch.export
    does at some points of its trace (a TorchExportError, an Exception); later forwards are plain."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _CALLS.append(1)
        if len(_CALLS) == 1:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs here
            except KeyboardInterrupt as exc:
                raise RuntimeError("exporter failed") from exc
        return self.linear(x.flatten(1))  # type: ignore[no-any-return]


def test_an_interrupt_the_exporter_wraps_is_not_an_exporter_failure() -> None:
    _CALLS.clear()
    with pytest.raises(KeyboardInterrupt):
        to_onnx(_WrapsInterrupts(), (1, 2, 2), opset=18)
    assert len(_CALLS) == 1  # the TorchScript exporter was not tried
