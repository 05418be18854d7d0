"""cnnspec: a declarative model-spec compiler and runner for convolutional networks.

    spec = cnnspec.load("specs/small_cnn.yaml")   # YAML → validated Spec (no torch)
    graph = cnnspec.check(spec)                    # shapes, params, MACs, receptive field (no torch)
    model = cnnspec.build(spec)                    # torch.nn.Module
    run = cnnspec.train(spec, out="runs/small")    # trains; returns the run directory
    onnx_path = cnnspec.export(run)                # ONNX + parity gate
    result = cnnspec.predict(onnx_path, ["img.png"])   # onnxruntime, no torch

This module is the whole public API, in one place. Each function imports its stage when
called, so `import cnnspec` loads only the error classes: it costs no pydantic, no torch,
and the command line's Ctrl-C handling starts right after it. Torch is imported only by
build, train, evaluate_run and export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from cnnspec.builder.graph_module import SpecModule
    from cnnspec.checker.graph import Graph
    from cnnspec.deploy.predict import PredictResult
    from cnnspec.deploy.session import Device
    from cnnspec.errors import (
        CheckpointError,
        CnnspecError,
        DataError,
        ExportError,
        PluginError,
        ShapeError,
        SpecError,
        TrainingError,
    )
    from cnnspec.spec.model import Spec
    from cnnspec.training.callbacks import Callback
    from cnnspec.training.progress import Reporter
    from cnnspec.training.signals import StopFlag
    from cnnspec.version import __version__


__all__ = [
    "CheckpointError",
    "CnnspecError",
    "DataError",
    "ExportError",
    "PluginError",
    "ShapeError",
    "SpecError",
    "TrainingError",
    "__version__",
    "build",
    "check",
    "evaluate_run",
    "export",
    "load",
    "loads",
    "predict",
    "train",
]

_ERRORS = frozenset(n for n in __all__ if n.endswith("Error"))


def __getattr__(name: str) -> Any:
    """The error classes and __version__, imported when first asked for (PEP 562).

    Why lazily: `cnnspec.cli` is inside this package, so this file runs before the console script
    can catch Ctrl-C; the less it imports, the shorter the moment a Ctrl-C there is Python's.
    """
    if name in _ERRORS:
        from cnnspec import errors

        return getattr(errors, name)
    if name == "__version__":
        from cnnspec.version import __version__

        return __version__
    raise AttributeError(f"module 'cnnspec' has no attribute {name!r}")


# Each function below has the signature of the stage function it calls (tests/structure/test_public_api.py
# compares them), so help(), editors and mypy see the real parameters.


def load(path: str | Path) -> Spec:
    """Read and validate a spec file; SpecError lists every problem, located (file:line:col)."""
    from cnnspec.spec.load import load as load_spec

    return load_spec(path)


def loads(text: str, file: str = "<string>") -> Spec:
    """Validate a spec given as YAML text; `file` names it in messages."""
    from cnnspec.spec.load import loads as loads_spec

    return loads_spec(text, file)


def check(spec: Spec) -> Graph:
    """Shapes, params, MACs and receptive field of every layer, statically (no torch).

    Raises ShapeError naming every layer whose input does not fit, with the arithmetic (SpecError
    when the first problem is a reference to nothing, DataError when it is the data section's).
    """
    from cnnspec.checker.checker import check as check_spec

    return check_spec(spec)


def build(spec_or_graph: Spec | Graph, *, pretrained: bool = True) -> SpecModule:
    """Build the torch module for a spec (checked first) or an already-checked graph.

    When the spec names `model.weights`, that state_dict file is loaded strictly;
    `pretrained=False` skips it. Raises ShapeError, SpecError or CheckpointError.
    """
    from cnnspec.builder.graph_module import build as build_module

    return build_module(spec_or_graph, pretrained=pretrained)


def train(
    spec_or_path: Spec | str | Path | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    progress: bool | Reporter | None = None,
    callbacks: Sequence[Callback] = (),
    stop: StopFlag | None = None,
) -> Path:
    """Train a spec and return its run directory (see cnnspec.training.api.train for the details).

    `resume` continues the run in that directory from its last checkpoint; `overrides` are
    `KEY=VALUE` strings validated like the file. Ctrl-C saves the state at the next step and
    raises cnnspec.training.signals.TrainingInterrupted (a KeyboardInterrupt) naming the run.
    `stop`: the flag the Ctrl-C sets, given by a caller that wants to see one that came after the
    last step (a sweep between trials); a fresh one when None.
    """
    from cnnspec.training.api import train as train_spec

    return train_spec(spec_or_path, out, resume, overrides, progress=progress, callbacks=callbacks, stop=stop)


def evaluate_run(run: str | Path, *, which: str = "best", split: str = "test") -> dict[str, Any]:
    """Evaluate a run's weights on its test (or val) split; writes evaluation.json and confusion_matrix.png."""
    from cnnspec.training.api import evaluate_run as evaluate

    return evaluate(run, which=which, split=split)


def export(run: str | Path, out: str | Path | None = None) -> Path:
    """Export a trained run directory to ONNX (default RUN/model.onnx) after the parity gate; returns the path.

    Raises ExportError (and writes nothing) when the gate fails, CheckpointError when
    `run` is not a usable run directory.
    """
    from cnnspec.deploy.exporter import export_run

    return export_run(run, out).path


def predict(
    model: str | Path,
    inputs: Iterable[str | Path],
    top_k: int = 5,
    device: Device = "auto",
    batch_size: int = 32,
) -> PredictResult:
    """Top-k classes of each image (files, or folders of images) with the exported model at `model` (no torch)."""
    from cnnspec.deploy.predict import predict as predict_images

    return predict_images(model, inputs, top_k=top_k, device=device, batch_size=batch_size)
