"""Shared pieces of the reliability tests: tiny specs, the CLI in-process, checkpoint scans.

Every test prints its figures as `RELIABILITY <topic>: key=value ...` lines (visible with
`pytest -s`); docs/reliability.md copies them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnspec.atomic import TMP_PREFIX
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import load_state, read_weights

ROOT = Path(__file__).resolve().parents[2]

# Synthetic data, 4 steps per epoch, no validation split (so best.safetensors is written every
# epoch): a run is mostly checkpoint writes, which is what these tests are about.
# Epochs of the runs that faults interrupt part-way (TINY itself trains 2).
LONG_EPOCHS = 4

TINY = """\
name: tiny
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    - batchnorm2d
    - relu
    - maxpool2d: {kernel_size: 2}
    - flatten
    - dropout: {p: 0.1}
    - linear: {out_features: 4}
data:
  dataset: {name: synthetic, num_samples: 64, num_classes: 4}
  batch_size: 16
  val_split: 0
  augment:
    - random_crop: {size: 8, padding: 1}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 1.0e-4}
schedule: {name: cosine}
train: {epochs: 2, seed: 5}
"""

STEPS_PER_EPOCH = 64 // 16


def report(topic: str, **figures: object) -> None:
    """Print one line of figures for docs/reliability.md (shown by `pytest -s`)."""
    print(f"\nRELIABILITY {topic}: " + " ".join(f"{k}={v}" for k, v in figures.items()))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(*args: str | Path) -> CliResult:
    """Run `cnnspec ARGS` in this process. Any exception other than the CLI's own exit is kept
    (not raised) so that tests can assert there was none: an escaped exception is a traceback."""
    from typer.testing import CliRunner

    from cnnspec.commands.app import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    exc = result.exception
    if isinstance(exc, SystemExit):
        exc = None
    return CliResult(result.exit_code, result.stdout, result.stderr, exc)


def assert_refused(result: CliResult, *needles: str) -> None:
    """Exit 1, a located `error:` message containing every needle, and no traceback."""
    assert result.exception is None, f"an exception escaped (a traceback): {result.exception!r}"
    assert "Traceback" not in result.output, result.output
    assert result.code == 1, result.output
    assert "error:" in result.stderr, result.output
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in:\n{result.stderr}"


def temporaries(folder: Path) -> list[Path]:
    """Temporary files of the atomic writer anywhere under `folder`."""
    return sorted(p for p in folder.rglob(TMP_PREFIX + "*"))


def checkpoint_files(run: Path) -> list[Path]:
    paths = RunPaths(run)
    return sorted(paths.checkpoints.glob("*.safetensors")) + ([paths.state] if paths.state.is_file() else [])


def assert_checkpoints_finite_and_loadable(run: Path) -> int:
    """Every checkpoint of `run` verifies against its hash, loads without running code and holds
    only finite numbers; returns how many files were checked."""
    checked = 0
    for path in checkpoint_files(run):
        tensors: list[torch.Tensor]
        if path.suffix == ".safetensors":
            tensors = list(read_weights(path).values())
        else:
            state = load_state(path)  # torch.load(weights_only=True) and the state's own hash
            tensors = list(state["model"].values())
        bad = [i for i, t in enumerate(tensors) if t.is_floating_point() and not torch.isfinite(t).all()]
        assert not bad, f"{path} holds non-finite tensors"
        checked += 1
    return checked


def child_env() -> dict[str, str]:
    """Environment for a `python -m cnnspec` child: this checkout first, one intra-op thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def cli_child(args: list[str], log: str, env: dict[str, str] | None = None) -> None:
    """`cnnspec ARGS` in a child process (the kill test's target), its output going to `log`,
    with `env` added to its environment (e.g. cnnspec.atomic's STOP_BEFORE_RENAME test hook).

    Runs in a process forked from a multiprocessing fork server that imported torch and
    cnnspec once, so twenty children cost seconds, not an interpreter start each.
    """
    os.environ.update(env or {})
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    torch.set_num_threads(1)
    from cnnspec.commands.app import app

    app([*args], prog_name="cnnspec")
