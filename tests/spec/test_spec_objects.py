"""Loaded specs behave as values: they dump back to data that loads to the same spec, and pickle
(multiprocessing, DataLoader workers and caches need that) even in a process that has not
used a layer kind yet."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from cnnspec.spec.load import load
from cnnspec.spec.model import Spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_dump_and_validate_round_trip(path: Path) -> None:
    spec = load(path)
    data = spec.model_dump(mode="json")
    layers = data["model"]["layers"]
    assert all(isinstance(item, dict) and len(item) == 1 for item in layers)  # `- KIND: {PARAMS}`
    again = Spec.model_validate(data)
    assert again.model_dump() == spec.model_dump()  # (`==` also compares where each was read from)
    assert again.model.layers == spec.model.layers


def test_specs_pickle_into_a_fresh_process(tmp_path: Path) -> None:
    blob = tmp_path / "specs.pkl"
    specs = [load(p) for p in SPECS]
    blob.write_bytes(pickle.dumps(specs))
    code = (
        "import pickle, sys; specs = pickle.load(open(sys.argv[1], 'rb'));"
        "print(sum(len(s.model.layers) for s in specs))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(blob)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == sum(len(s.model.layers) for s in specs)
    assert pickle.loads(blob.read_bytes()) == specs
