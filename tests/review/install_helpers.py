"""Helpers for the tests that install cnnspec for real: a copy of the checkout, and telling an
unreachable registry (skip) from a broken install (fail)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.review.review_helpers import ROOT

# What pip writes when it cannot reach an index (urllib3's and pip's own wording).
UNREACHABLE = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|Network is unreachable|"
    r"ConnectTimeout|ReadTimeout|Failed to establish a new connection|No route to host"
)


def copy_checkout(target: Path, *extra: str) -> Path:
    """What a clone holds of the distribution: pyproject.toml, README.md and the package (no caches),
    and the `extra` files named (relative to the repository root)."""
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", *extra):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "cnnspec", target / "cnnspec", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target
