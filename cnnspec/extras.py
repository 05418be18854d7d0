"""Optional dependencies: which extra of the distribution a module comes with, and the message that says so.

`pip install cnnspec` is the core (validate, summary, fmt, diff, schema, init): pydantic,
ruamel.yaml/PyYAML, typer and rich. Training, export, inference and benchmarks need the
`train` extra (torch, torchvision, onnx, onnxruntime, …; pyproject.toml lists it). A command
that imports one of those modules while it is not installed ends with one line naming the
extra (the command group calls `missing_extra` on every ImportError), never a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

from cnnspec.errors import CnnspecError, Diagnostic

# The top-level module → the extra that installs it (pyproject.toml's [project.optional-dependencies]).
EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "train",
    "torchvision": "train",
    "onnx": "train",
    "onnxscript": "train",
    "onnxruntime": "train",
    "safetensors": "train",
    "matplotlib": "train",
    "numpy": "train",
    "PIL": "train",
    "sklearn": "train",
}

# How a message names each extra.
DESCRIPTION: dict[str, str] = {"train": "training"}


def missing_extra(exc: ImportError, command: str) -> CnnspecError | None:
    """The error to report when `exc` is the import of a module of an extra that is not installed;
    None for anything else (a module of an extra that is installed but broken is a bug to show)."""
    name = exc.name or ""
    top = name.partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None or _installed(top):
        return None
    return CnnspecError(
        Diagnostic(
            f"cnnspec {command} needs the {DESCRIPTION.get(extra, extra)} extra: pip install 'cnnspec[{extra}]'",
            notes=(f"{top} is not installed for {sys.executable}",),
        )
    )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a half-installed package: its import is what failed
        return False
