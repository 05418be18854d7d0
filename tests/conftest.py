"""Shared test settings: GPU tests skip (with the reason) where CUDA is absent; training tests use
one intra-op thread; hypothesis draws the same examples on every run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Every hypothesis test replays the same examples: a failure is a bug to reproduce, not luck.
settings.register_profile("cnnspec", derandomize=True, database=None, deadline=None)
settings.load_profile("cnnspec")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("gpu" in item.keywords for item in items):
        return
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: no GPU on this machine (run on a GPU machine to exercise it)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Folders whose tests train tiny models: they gain nothing from a second intra-op thread, and on a
# busy 2-core machine two threads spin against each other and run several times slower. torchrun
# starts workers with OMP_NUM_THREADS=1 and the kill tests' children use one thread too, so the
# in-process runs they are compared with use the same count.
ONE_THREAD_FOLDERS = {"train", "reliability", "distributed"}

# Under pytest-xdist (`pytest -n auto`, as .ci/run runs the suite) each core already runs a worker:
# a second intra-op thread per worker would only spin against the other worker.
IN_XDIST_WORKER = "PYTEST_XDIST_WORKER" in os.environ


@pytest.fixture(scope="module", autouse=True)
def _one_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    in_folder = request.path.parent.name in ONE_THREAD_FOLDERS
    if not in_folder and not (IN_XDIST_WORKER and "torch" in sys.modules):
        yield
        return
    import torch  # here, not at the top: the torch-free tests must not import it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _decoded_image_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """data.cache_dir auto writes to the user's cache folder: the suite's runs (and their subprocesses,
    which inherit the variable) write to a folder of their own instead."""
    before = os.environ.get("CNNSPEC_CACHE_DIR")
    os.environ["CNNSPEC_CACHE_DIR"] = str(tmp_path_factory.mktemp("decoded-cache"))
    yield
    if before is None:
        os.environ.pop("CNNSPEC_CACHE_DIR", None)
    else:
        os.environ["CNNSPEC_CACHE_DIR"] = before


@pytest.fixture
def specs_dir() -> Path:
    return SPECS
