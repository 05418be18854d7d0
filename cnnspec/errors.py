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


def suggest(name: str, candidates: Sequence[str]) -> str | None:
    """The closest valid name to a misspelt one, phrased for a hint."""
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
