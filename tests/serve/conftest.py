"""The digits model every serve test module uses: trained for 1 epoch and exported once per module."""

from __future__ import annotations

import pytest

from tests.serve._serve_helpers import Digits, train_digits


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    return train_digits(tmp_path_factory)
