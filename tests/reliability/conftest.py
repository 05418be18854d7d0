"""Fixtures of the reliability tests: one intra-op thread, a small trained run to damage."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import cnnspec
from tests.reliability._reliability_helpers import LONG_EPOCHS, TINY


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tiny_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-epoch run (read-only for the tests: they damage copies)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cnnspec.train(tiny_spec, out=tmp_path_factory.mktemp("trained") / "run", progress=False)
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def copy_run(trained_run: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of the trained run under tmp_path, to damage."""

    def make(name: str = "run") -> Path:
        target = tmp_path / name
        shutil.copytree(trained_run, target)
        return target

    return make


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny spec trained for LONG_EPOCHS epochs (room for faults in the middle of a run)."""
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY.replace("epochs: 2", f"epochs: {LONG_EPOCHS}"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of `spec`, to compare damaged-then-resumed runs with."""
    return cnnspec.train(spec, out=tmp_path_factory.mktemp("reference") / "run", progress=False)


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Paths of every onnxruntime session created while the test runs (a subclass of the real class
    that only counts: the sessions are real)."""
    import onnxruntime as ort

    created: list[str] = []

    class Counting(ort.InferenceSession):  # type: ignore[misc]
        def __init__(self, path: object, *args: object, **kwargs: object) -> None:
            created.append(str(path))
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Counting)
    yield created
