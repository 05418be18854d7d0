"""`cnnspec lr-find` on digits: an exponential ramp, a plot, a suggestion inside the range, no run left behind."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

pytestmark = pytest.mark.slow
SPEC = Path(__file__).resolve().parents[2] / "specs" / "digits.yaml"


def test_lr_find_ramps_exponentially_and_suggests_an_lr_in_range(tmp_path: Path) -> None:
    out = tmp_path / "lrf"
    result = run_cli("lr-find", str(SPEC), "--out", str(out), "--steps", "60", "--min-lr", "1e-5", "--max-lr", "1")
    assert result.exit_code == 0, result.output
    assert "suggested lr:" in result.output
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "lr_find.json").read_text())
    lrs = record["lrs"]
    assert lrs[0] == pytest.approx(1e-5)
    # exponential: a constant ratio between neighbours, (1 / 1e-5) ** (1 / 59)
    ratio = (1 / 1e-5) ** (1 / 59)
    assert all(b / a == pytest.approx(ratio, rel=1e-9) for a, b in itertools.pairwise(lrs))
    assert 1e-5 <= record["suggestion"] <= 1
    assert all(math.isfinite(x) for x in record["losses"])
    assert sorted(p.name for p in out.iterdir()) == ["lr_find.json", "lr_find.png"]  # no run directory


def test_a_range_upside_down_is_an_error(tmp_path: Path) -> None:
    result = run_cli("lr-find", str(SPEC), "--out", str(tmp_path), "--min-lr", "1", "--max-lr", "1e-3")
    assert result.exit_code == 1
    assert "0 < min-lr < max-lr" in result.output
