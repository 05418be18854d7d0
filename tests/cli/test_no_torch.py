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
from cnnspec.cli import run  # main() would end the process before the probe reads it
code = 0
try:
    run()
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
    "summary --depth (a backbone shown layer by layer)": ["summary", "specs/resnet18_transfer.yaml", "--depth", "4"],
    "schema": ["schema"],
    "fmt --check": ["fmt", "--check", "specs/small_cnn.yaml"],
    "diff": ["diff", "specs/small_cnn.yaml", "specs/deeper_cnn.yaml"],
    "validate --strict": ["validate", "--strict", "specs/digits.yaml"],
    "diff --format markdown": ["diff", "--format", "markdown", "specs/small_cnn.yaml", "specs/small_cnn.yaml"],
    "init --list": ["init", "--list"],
    "graph": ["graph", "specs/resnet18.yaml", "--depth", "1"],
    "diff --format html": ["diff", "--format", "html", "specs/small_cnn.yaml", "specs/deeper_cnn.yaml"],
    "train --help": ["train", "--help"],
}


def probe(args: list[str], cwd: Path) -> tuple[dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(line for line in proc.stderr.splitlines() if line.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE ")), proc.stderr


@pytest.mark.parametrize("name", list(COMMANDS))
def test_static_command_imports_no_torch(name: str) -> None:
    result, stderr = probe(COMMANDS[name], ROOT)
    assert result["code"] in (0, 1, None), stderr
    assert result["heavy"] == [], f"`cnnspec {' '.join(COMMANDS[name])}` imported {result['heavy']}"


def test_init_writing_a_spec_imports_no_torch(tmp_path: Path) -> None:
    result, stderr = probe(["init", "digits", "specs/"], tmp_path)
    assert result["code"] in (0, None), stderr
    assert (tmp_path / "specs" / "digits.yaml").is_file()
    assert result["heavy"] == [], f"`cnnspec init digits specs/` imported {result['heavy']}"
