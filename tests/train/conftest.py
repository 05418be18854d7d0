"""Small, fast specs for the training tests (digits and synthetic data: no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train._train_helpers import DIGITS_FAST


@pytest.fixture
def digits_fast(tmp_path: Path) -> Path:
    path = tmp_path / "digits_fast.yaml"
    path.write_text(DIGITS_FAST, encoding="utf-8")
    return path
