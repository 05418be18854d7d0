"""The static commands never import torch (nor onnx, onnxruntime, matplotlib): DESIGN.md's promise
that `validate` answers in a fraction of `import torch`'s time, checked on `sys.modules`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "matplotlib", "safetensors", "sklearn", "numpy")

PROBE = """
import json, sys
args, watched = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["cnnspec", *args]
from cnnspec.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & watched)
print("PROBE", json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""

COMMANDS = {
    "--help": ["--help"],
    "validate": ["validate", "specs/resnet18.yaml", "specs/small_cnn.yaml"],
    "validate an invalid spec": ["validate", "tests/fixtures/invalid/linear_in_features_mismatch.yaml"],
    "validate --format json": ["validate", "--format", "json", "specs/deeper_cnn.yaml"],
    "summary": ["summary", "specs/resnet18.yaml"],
    "summary --format json": ["summary", "specs/resnet18_transfer.yaml", "--format", "json"],
    "schema": ["schema"],
    "fmt --check": ["fmt", "--check", "specs/small_cnn.yaml"],
    "diff": ["diff", "specs/small_cnn.yaml", "specs/deeper_cnn.yaml"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_static_command_imports_no_torch(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(COMMANDS[name]), json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    probe = next(line for line in proc.stderr.splitlines() if line.startswith("PROBE "))
    result = json.loads(probe.removeprefix("PROBE "))
    assert result["code"] in (0, 1, None), proc.stderr
    assert result["heavy"] == [], f"`cnnspec {' '.join(COMMANDS[name])}` imported {result['heavy']}"
