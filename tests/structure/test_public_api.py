"""The public API is plain functions in one place (`cnnspec/__init__.py`), and `import cnnspec` is cheap.

Before: `cnnspec.build`, `train` and `export` were packages made callable by swapping their
module class (callable_package.py), and `cnnspec.check` stood where the `check/` package's
attribute would go.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cnnspec

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ["load", "loads", "check", "build", "train", "evaluate_run", "export", "predict"]
# The stage function each public one calls with the same parameters (export returns a Path, not the report).
STAGE = {
    "load": "cnnspec.spec.load:load",
    "loads": "cnnspec.spec.load:loads",
    "check": "cnnspec.checker.checker:check",
    "build": "cnnspec.builder.graph_module:build",
    "train": "cnnspec.training.api:train",
    "evaluate_run": "cnnspec.training.api:evaluate_run",
    "predict": "cnnspec.deploy.predict:predict",
}


def _stage(name: str) -> Callable[..., Any]:
    module, attr = STAGE[name].split(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return function


def _every_module() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(cnnspec.__path__, "cnnspec."):
        if info.name.rsplit(".", 1)[-1] != "__main__":  # running it is the command line
            names.append(info.name)
    return names


def test_every_public_name_is_exported() -> None:
    assert set(PUBLIC) <= set(cnnspec.__all__)
    assert [name for name in cnnspec.__all__ if not hasattr(cnnspec, name)] == []


@pytest.mark.parametrize("name", PUBLIC)
def test_public_function_is_a_plain_function_of_the_package_after_every_module_is_imported(name: str) -> None:
    for module in _every_module():  # importing a stage package's modules used to rebind the name
        importlib.import_module(module)
    function = getattr(cnnspec, name)
    assert inspect.isfunction(function), f"cnnspec.{name} is {function!r}"
    assert function.__module__ == "cnnspec"
    assert function.__doc__


@pytest.mark.parametrize("name", sorted(STAGE))
def test_public_function_has_the_signature_of_the_stage_function_it_calls(name: str) -> None:
    assert inspect.signature(getattr(cnnspec, name)) == inspect.signature(_stage(name))


def test_build_train_and_export_take_the_arguments_their_docs_show(tmp_path: Path) -> None:
    """A call through each wrapper reaches its stage: the user errors come from the stage, located."""
    spec = cnnspec.load(ROOT / "specs" / "digits.yaml")
    assert cnnspec.build(cnnspec.check(spec), pretrained=False).layer_ids()
    with pytest.raises(cnnspec.SpecError, match=r"nosuch"):
        cnnspec.train(spec, out=tmp_path / "run", overrides=["train.nosuch=1"], progress=False)
    with pytest.raises(cnnspec.CheckpointError, match=r"not-a-run is not a cnnspec run directory"):
        cnnspec.train(resume=tmp_path / "not-a-run", progress=False)
    with pytest.raises(cnnspec.CheckpointError):
        cnnspec.export(tmp_path / "not-a-run")


IMPORT_PROBE = """
import json, sys
import cnnspec
print(json.dumps(sorted(sys.modules)))
"""


def test_import_cnnspec_loads_no_other_module_until_a_name_is_asked_for() -> None:
    """The error classes and __version__ come when first used (the console script's Ctrl-C handling
    starts sooner); no stage, and nothing heavy, is imported by `import cnnspec`."""
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(proc.stdout)
    assert sorted(m for m in loaded if m.startswith("cnnspec")) == ["cnnspec"]
    heavy = {"pydantic", "torch", "typer", "rich", "ruamel", "yaml", "numpy", "onnxruntime"}
    assert sorted({m.split(".")[0] for m in loaded} & heavy) == []


def test_the_error_classes_and_the_version_are_there_when_asked_for() -> None:
    from cnnspec import errors, version

    for name in ("CnnspecError", "SpecError", "ShapeError", "TrainingError", "ExportError", "DataError"):
        assert getattr(cnnspec, name) is getattr(errors, name)
    assert cnnspec.__version__ == version.__version__
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cnnspec.nothing  # noqa: B018
