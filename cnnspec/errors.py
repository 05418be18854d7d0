"""One error tree for everything cnnspec reports about a user's input.

Every message has the shape compilers and CI annotators parse::

    FILE:LINE:COL: error: what was wrong
      note: the arithmetic or context
      hint: what to do about it
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A position in a source file; line and column are 1-based."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in the user's input."""

    message: str
    location: Location | None = None
    notes: tuple[str, ...] = ()
    hint: str | None = None
    severity: str = "error"

    def format(self) -> str:
        where = f"{self.location}: " if self.location else ""
        lines = [f"{where}{self.severity}: {self.message}"]
        lines += [f"  note: {n}" for n in self.notes]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        loc = self.location
        return {
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
            "severity": self.severity,
            "message": self.message,
            "notes": list(self.notes),
            "hint": self.hint,
        }


class CnnspecError(Exception):
    """Base of every error caused by the user's input (exit code 1)."""

    def __init__(self, diagnostics: Diagnostic | str | Iterable[Diagnostic], *, hint: str | None = None):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(diagnostics, hint=hint)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class SpecError(CnnspecError):
    """The spec file is not valid YAML or does not match the schema."""


class ShapeError(CnnspecError):
    """The layers do not fit together."""


class DataError(CnnspecError):
    """A dataset, image or input file cannot be used."""


class CheckpointError(CnnspecError):
    """A run directory or checkpoint cannot be used."""


class ExportError(CnnspecError):
    """Export or its parity gate failed, or an ONNX file is refused."""


class TrainingError(CnnspecError):
    """Training stopped because of a fault (non-finite loss, out of memory)."""


# Names people bring from Keras, torchvision or PyTorch's class names, and what cnnspec calls them.
SYNONYMS: dict[str, str] = {
    # layer kinds
    "dense": "linear",
    "fc": "linear",
    "maxpooling2d": "maxpool2d",
    "averagepooling2d": "avgpool2d",
    "globalaveragepooling2d": "global_avgpool",
    "gap": "global_avgpool",
    "batchnormalization": "batchnorm2d",
    "bn": "batchnorm2d",
    "conv": "conv2d",
    "convolution": "conv2d",
    "deconv": "conv_transpose2d",
    "conv2dtranspose": "conv_transpose2d",
    "swish": "silu",
    "upsampling2d": "upsample",
    "concatenate": "concat",
    "cat": "concat",
    "sum": "add",
    # parameters
    "filters": "out_channels",
    "units": "out_features",
    "rate": "p",
    "pool_size": "kernel_size",
    "strides": "stride",
    "dilation_rate": "dilation",
    "use_bias": "bias",
    "epsilon": "eps",
    "alpha": "negative_slope",
    "num_classes": "out_features",
    # data, optimisation
    "randomcrop": "random_crop",
    "randomhorizontalflip": "horizontal_flip",
    "random_horizontal_flip": "horizontal_flip",
    "randomverticalflip": "vertical_flip",
    "random_vertical_flip": "vertical_flip",
    "randomresizedcrop": "random_resized_crop",
    "colorjitter": "color_jitter",
    "learning_rate": "lr",
    "cosineannealinglr": "cosine",
    "cosine_annealing": "cosine",
    "steplr": "step",
    "multisteplr": "multistep",
    "onecyclelr": "onecycle",
    "one_cycle": "onecycle",
}


def _fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def suggest(name: str, candidates: Sequence[str]) -> str | None:
    """The closest valid name to a misspelt one, phrased for a hint.

    Tried in order: the same name but for case, '_' and '-' (conv2D, MaxPool2d); a known
    synonym from Keras or PyTorch (filters → out_channels); a close spelling (difflib);
    a valid name that starts the given one (cosine_annealing → cosine).
    """
    import difflib

    options = list(candidates)
    folded = {_fold(c): c for c in options}
    if _fold(name) in folded:
        return f"did you mean '{folded[_fold(name)]}'?"
    for key in (name.lower(), _fold(name)):
        if SYNONYMS.get(key) in options:
            return f"did you mean '{SYNONYMS[key]}'?"
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    starts = [c for c in options if len(c) >= 3 and name.lower().startswith(c.lower())]
    if starts:
        return f"did you mean '{max(starts, key=len)}'?"
    return None


def suggested_name(name: str, candidates: Sequence[str]) -> str | None:
    """The name `suggest` would propose, or None."""
    hint = suggest(name, candidates)
    return hint.split("'")[1] if hint else None
