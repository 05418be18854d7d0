"""Settings of the distributed tests: one intra-op thread (as torchrun gives each worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """torchrun starts workers with OMP_NUM_THREADS=1; the in-process runs they are compared with
    use the same count (and two threads spin against each other on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
