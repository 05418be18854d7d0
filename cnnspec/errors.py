"""One error tree for everything cnnspec reports about a user's input.

Every message has the shape compilers and CI annotators parse::

    FILE:LINE:COL: error: what was wrong
      note: the arithmetic or context
      hint: what to do about it
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Literal, get_args

from cnnspec.terminal import printable

# What a problem is about; each category belongs to one exception class (`ERROR_CLASSES`), the class
# a caller catches. The checker finds problems of several categories in one pass: `check` raises the
# class of the first error, and every diagnostic keeps its own category.
Category = Literal[
    "spec",  # the YAML, or a value the schema refuses (SpecError)
    "reference",  # a name that names nothing: a layer id in `inputs`, a block, a block parameter, a $name (SpecError)
    "graph",  # how the layers are named and connected: an id used twice or taken by torch, a cycle (ShapeError)
    "shape",  # the layers' shapes do not fit together (ShapeError)
    "data",  # the dataset, an image or an input file (DataError)
    "memory",  # more memory than the limit or the device allows (DataError)
    "checkpoint",  # a run directory, checkpoint or weights file (CheckpointError)
    "export",  # export, its parity gate, an ONNX file (ExportError)
    "training",  # a fault while training (TrainingError)
    "plugin",  # an installed layer plugin (PluginError)
    "other",  # anything else cnnspec refuses (CnnspecError)
]
CATEGORIES: tuple[Category, ...] = get_args(Category)


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
    """One problem found in the user's input.

    `suggestion` is the valid name a misspelt one most likely meant (`suggested_name`); the hint
    then starts with "did you mean 'NAME'?". `category` says what the problem is about and so which
    exception class reports it (`error_class`); None until an exception or a stage says so.
    """

    message: str
    location: Location | None = None
    notes: tuple[str, ...] = ()
    hint: str | None = None
    severity: str = "error"
    suggestion: str | None = None
    category: Category | None = None

    def __post_init__(self) -> None:
        if self.suggestion is not None:
            asked = did_you_mean(self.suggestion)
            if self.hint is None or not self.hint.startswith(asked):  # a hint given too is kept after it
                object.__setattr__(self, "hint", asked if self.hint is None else f"{asked}; {self.hint}")

    @property
    def error_class(self) -> type[CnnspecError]:
        """The exception class of this diagnostic's category (CnnspecError when it has none)."""
        return ERROR_CLASSES[self.category or "other"]

    def format(self) -> str:
        where = f"{_shortened(str(self.location))}: " if self.location else ""
        lines = [f"{where}{self.severity}: {self.message}"]
        lines += [f"  note: {n}" for n in self.notes]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        # A message quotes what the user gave (a --set value, a path, a class name): an escape sequence in
        # it is shown as `\x1b`, never acted on by the terminal. Line breaks of the message itself stay.
        return "\n".join(printable(part) for line in lines for part in line.split("\n"))

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


ERROR_CLASSES: dict[Category, type[CnnspecError]] = {}


class CnnspecError(Exception):
    """Base of every error caused by the user's input (exit code 1).

    Each subclass names its categories (`class SpecError(CnnspecError, categories=("spec", ...))`);
    the first is given to the diagnostics it is raised with that have none.
    """

    category: ClassVar[Category] = "other"

    def __init_subclass__(cls, categories: tuple[Category, ...] = (), **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for name in categories:
            if name in ERROR_CLASSES:
                raise TypeError(f"category {name!r} belongs to {ERROR_CLASSES[name].__name__} already")
            ERROR_CLASSES[name] = cls
        if categories:
            cls.category = categories[0]

    def __init__(self, diagnostics: Diagnostic | str | Iterable[Diagnostic], *, hint: str | None = None):
        """`hint` is the hint of a message given as text, or is added to the last diagnostic's."""
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(diagnostics, hint=hint)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = [
            d if d.category is not None else replace(d, category=self.category) for d in diagnostics
        ]
        if hint is not None and self.diagnostics and self.diagnostics[-1].hint != hint:
            last = self.diagnostics[-1]
            self.diagnostics[-1] = replace(last, hint=hint if last.hint is None else f"{last.hint}; {hint}")
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


def _shortened(location: str, keep: int = 120) -> str:
    """A location (a `--set` with a 100 KB value, a path) cut in the middle when it is long, so the
    message stays a line to read; the value itself is quoted, shortened too, in the message."""
    return location if len(location) <= 2 * keep else f"{location[:keep]}…{location[-keep // 2 :]}"


ERROR_CLASSES["other"] = CnnspecError


class SpecError(CnnspecError, categories=("spec", "reference")):
    """The spec file is not valid YAML, does not match the schema, or names something that is not there."""


class ShapeError(CnnspecError, categories=("shape", "graph")):
    """The layers do not fit together: their shapes, or how they are named and connected."""


class DataError(CnnspecError, categories=("data", "memory")):
    """A dataset, image or input file cannot be used, or the run needs more memory than there is."""


class CheckpointError(CnnspecError, categories=("checkpoint",)):
    """A run directory, checkpoint or weights file cannot be used."""


class ExportError(CnnspecError, categories=("export",)):
    """Export or its parity gate failed, or an ONNX file is refused."""


class TrainingError(CnnspecError, categories=("training",)):
    """Training stopped because of a fault (non-finite loss, out of memory)."""


class PluginError(CnnspecError, categories=("plugin",)):
    """An installed layer plugin could not be loaded (cnnspec.layers.plugins)."""


def error_for(diagnostics: Sequence[Diagnostic]) -> CnnspecError:
    """The exception that reports `diagnostics` (at least one): the class of the first one's category.

    A caller that wants each problem's own class reads `exc.diagnostics[i].error_class`."""
    return diagnostics[0].error_class(diagnostics)


def in_category(category: Category, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """`diagnostics`, those without a category given `category` (a stage's checks, all of one kind)."""
    return [d if d.category is not None else replace(d, category=category) for d in diagnostics]


# A name from the input is echoed in a message up to this many characters: a 1 MB kind name is an
# attack or an accident, and a message that repeats it whole buries everything else.
ECHO_LIMIT = 80


def shown(name: object, limit: int = ECHO_LIMIT) -> str:
    """A name from the input, quoted, as a message shows it: 'relu', or 'aaaa…' (1,000,000 characters)."""
    text = str(name)
    if len(text) <= limit:
        return f"'{text}'"
    return f"'{text[: limit - 1]}…' ({len(text):,} characters)"


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
    "mul": "multiply",
    "product": "multiply",
    "split": "slice",
    "chunk": "slice",
    "shuffle": "channel_shuffle",
    "squeezeexcitation": "squeeze_excite",
    "se": "squeeze_excite",
    "layerscale": "scale",
    "stochasticdepth": "drop_path",
    "layernorm2d": "layernorm",
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


def fold_name(name: str) -> str:
    """A name without case, '_' and '-': two names that fold alike are the same name to a reader
    (`suggest` proposes one for the other; layer kinds may not differ only so)."""
    return name.lower().replace("_", "").replace("-", "")


_fold = fold_name


def _distance(a: str, b: str, *, substitute: bool) -> int:
    """Edits from a to b: insertions, deletions, swaps of neighbours and (when `substitute`) replacements
    (the optimal-string-alignment distance)."""
    far = len(a) + len(b)  # more than any real distance: an edit not allowed
    d = [[i + j if i == 0 or j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            same = a[i - 1] == b[j - 1]
            replace = d[i - 1][j - 1] + (0 if same else 1 if substitute else far)
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, replace)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _typo_distance(name: str, candidate: str) -> int | None:
    """How many slips of the keyboard turn `candidate` into `name` (both folded), or None when `name`
    looks like another name rather than a misspelling of this one.

    A suggestion must not propose a different function, so these are never typos:
    - other digits (relu6 for relu, conv1d for conv2d, resnet34 for resnet18): digits name a variant
      (a name without digits may still get one: maxpool → maxpool2d);
    - another first letter, or letters put in front (selu, prelu, rrelu, hardsigmoid, logsoftmax): a
      prefix makes a new name, and slips seldom hit the first letter;
    - in a name of four letters or fewer, one letter replaced by another (silu, gelu, selu, relu are
      all functions); only a doubled, dropped or swapped letter counts there.
    What is left counts if it is at most one slip (two when the longer name has more than five letters),
    or if `name` is the candidate with a few letters after it, up to half its length
    (reflection → reflect, out_chan → out_ch).
    """
    if name == candidate:
        return 0
    digits = re.findall(r"\d+", name)
    if digits and digits != re.findall(r"\d+", candidate):
        return None
    if name[:1] != candidate[:1] or (len(name) > len(candidate) and name.endswith(candidate)):
        return None
    tail = name.removeprefix(candidate)
    if tail != name and len(tail) <= len(candidate) // 2:
        return len(tail)
    dist = _distance(name, candidate, substitute=min(len(name), len(candidate)) > 4)
    return dist if dist <= (1 if max(len(name), len(candidate)) <= 5 else 2) else None


def did_you_mean(name: str) -> str:
    """The hint that proposes `name`."""
    return f"did you mean '{name}'?"


def suggest(name: str, candidates: Sequence[str]) -> str | None:
    """The closest valid name to a misspelt one (`suggested_name`), phrased for a hint; None when nothing is close."""
    close = suggested_name(name, candidates)
    return did_you_mean(close) if close is not None else None


def suggested_name(name: str, candidates: Sequence[str]) -> str | None:
    """The closest valid name to a misspelt one; None when nothing is close.

    Tried in order: the same name but for case, '_' and '-' (conv2D, MaxPool2d, leakyrelu); a known
    synonym from Keras or PyTorch (filters → out_channels); a misspelling (`_typo_distance`: rellu →
    relu, batchnrom2d → batchnorm2d, conv2 → conv2d, but never relu6 → relu or hardsigmoid → sigmoid).
    """
    options = list(candidates)
    longest = max((len(c) for c in options), default=0)
    if len(name) > 2 * longest + 2:
        return None  # no slip of the keyboard makes a name that long (and the edit distance would be slow)
    folded = {_fold(c): c for c in options}
    if _fold(name) in folded:
        return folded[_fold(name)]
    for key in (name.lower(), _fold(name)):
        if SYNONYMS.get(key) in options:
            return SYNONYMS[key]
    scored = [(d, i) for i, c in enumerate(options) if (d := _typo_distance(_fold(name), _fold(c))) is not None]
    if scored:
        return options[min(scored)[1]]
    return None
