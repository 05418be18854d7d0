"""Tiny real runs for the tracking tests: the digits CNN of tests/train, one epoch."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cnnspec
from cnnspec.training.progress import Reporter
from tests.train._train_helpers import DIGITS_FAST

ONE_EPOCH = DIGITS_FAST.replace("train: {epochs: 2, seed: 3}", "train: {epochs: 1, seed: 3}")
assert ONE_EPOCH != DIGITS_FAST


class Lines(Reporter):
    """A reporter that keeps the lines the run says (its warnings among them)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

    def warnings(self) -> list[str]:
        return [line for line in self.lines if line.startswith("warning:")]


def spec_file(folder: Path, text: str = ONE_EPOCH) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digits.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def train(spec: Path, out: Path, *overrides: str, reporter: Reporter | None = None, **kw: Any) -> Path:
    return cnnspec.train(spec, out=out, overrides=list(overrides), progress=reporter or False, **kw)


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def result(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "result.json").read_text())
    return data


@contextlib.contextmanager
def full_disk(folder: Path) -> Iterator[Path]:
    """A real full disk: a 1 MiB tmpfs mounted on `folder`, filled to the last byte (as
    tests/reliability/test_disk_full.py makes one); a skip saying why where it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs, and mounting one needs root")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left to flush on close
            for size in (65536, 4096, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * size)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30, check=False)
