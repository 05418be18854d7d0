"""A real headless browser for the page tests: Debian's `chromium` (`.ci/run` installs it when missing),
or the one CNNSPEC_BROWSER names; `browser()` skips the test, saying so, when there is none. Each run
is a fresh profile in the test's folder, through the browser's command-line switches (`--dump-dom`:
the DOM after the scripts ran; `--screenshot`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1400, 1800)


def browser() -> str:
    named = os.environ.get("CNNSPEC_BROWSER")
    if named:
        return named
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no headless browser: none of {', '.join(BROWSERS)} is on PATH (apt-get install chromium)")


def headless(binary: str, profile: Path, *switches: str, url: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary,
        "--headless",
        "--no-sandbox",  # as root in a container
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *switches,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
