"""Small, fast specs for the training tests (digits and synthetic data: no downloads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _train_helpers import DIGITS_FAST


@pytest.fixture
def digits_fast(tmp_path: Path) -> Path:
    path = tmp_path / "digits_fast.yaml"
    path.write_text(DIGITS_FAST, encoding="utf-8")
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """These tiny models do not gain from a second intra-op thread, and on a machine whose cores
    are busy two threads spin against each other and run several times slower; the results do
    not depend on it (resume tests compare runs made with the same count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
