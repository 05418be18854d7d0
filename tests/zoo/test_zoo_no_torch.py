"""`cnnspec validate specs/zoo/*.yaml` passes without importing torch (as tests/cli/test_no_torch.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli.test_no_torch import HEAVY, PROBE, ROOT


def test_validating_the_whole_zoo_imports_no_torch() -> None:
    specs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs" / "zoo").glob("*.yaml"))
    assert len(specs) >= 10
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["validate", *specs]), json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    probe = next(line for line in proc.stderr.splitlines() if line.startswith("PROBE "))
    result = json.loads(probe.removeprefix("PROBE "))
    assert result["code"] in (0, None), proc.stdout + proc.stderr  # every zoo spec is valid
    assert result["heavy"] == [], f"validating the zoo imported {result['heavy']}"
    assert f"{len(specs)} of {len(specs)} specs valid" in proc.stdout
