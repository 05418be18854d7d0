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
    "tensorboard": "track",
    "mlflow": "track",
    "optuna": "sweep",
    "starlette": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "prometheus_client": "serve",
}

# The commands that need an extra: checked before the command starts, so that what it reads first
# (a run directory, a spec) cannot give another error ahead of the one that says what to install.
EXTRA_OF_COMMAND: dict[str, str] = {
    name: "train" for name in ("train", "evaluate", "export", "quantize", "predict", "bench")
}
EXTRA_OF_COMMAND["serve"] = "serve"  # and onnxruntime, numpy, Pillow: the train extra's, named when missing

# How a message names each extra.
DESCRIPTION: dict[str, str] = {
    "train": "training",
    "png": "PNG",
    "track": "experiment tracking",
    "sweep": "sweep",
    "serve": "serving",
}

# The extra that brings Pillow alone: `cnnspec graph -o FILE.png` rasterises with it. Pillow also
# comes with `train` (EXTRA_OF_MODULE names that one, for the commands of the train extra).
PNG_EXTRA = "png"


def extra_not_installed(command: str) -> CnnspecError | None:
    """The error to report when `command` needs an extra of which a module is not installed; None otherwise."""
    extra = EXTRA_OF_COMMAND.get(command)
    if extra is None:
        return None
    absent = [module for module, of in EXTRA_OF_MODULE.items() if of == extra and not _installed(module)]
    return _needs(command, extra, absent[0]) if absent else None


def missing_extra(exc: ImportError, command: str) -> CnnspecError | None:
    """The error to report when `exc` is the import of a module of an extra that is not installed;
    None for anything else (a module of an extra that is installed but broken is a bug to show)."""
    name = exc.name or ""
    top = name.partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None or _installed(top):
        return None
    return _needs(command, extra, top)


def png_not_installed(command: str) -> CnnspecError | None:
    """The error to report when `command` is to write a PNG and Pillow is not installed, or is installed
    but does not import (a missing or mismatched `_imaging` module); None when it imports."""
    if not _installed("PIL"):
        return CnnspecError(
            Diagnostic(
                f"cnnspec {command} -o FILE.png needs the PNG extra: pip install 'cnnspec[png]'",
                notes=(f"PIL (Pillow) is not installed for {sys.executable}", ".svg and .html files need no extra"),
            )
        )
    try:
        for module in ("PIL.Image", "PIL.ImageDraw", "PIL.ImageFont"):  # what cnnspec.render.graph_png draws with
            importlib.import_module(module)
    except ImportError as exc:
        reason = " ".join(str(exc).split())  # on one line
        return CnnspecError(
            Diagnostic(
                f"cnnspec {command} -o FILE.png needs Pillow, which is installed but broken: {reason}",
                notes=(f"for {sys.executable}", ".svg and .html files need no Pillow"),
                hint=f"reinstall it: {sys.executable} -m pip install --force-reinstall --no-deps pillow",
            )
        )
    return None


def _needs(command: str, extra: str, module: str) -> CnnspecError:
    return CnnspecError(
        Diagnostic(
            f"cnnspec {command} needs the {DESCRIPTION.get(extra, extra)} extra: pip install 'cnnspec[{extra}]'",
            notes=(f"{module} is not installed for {sys.executable}",),
        )
    )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a half-installed package: its import is what failed
        return False
