"""Load and check spec files, collecting diagnostics instead of stopping at the first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cnnspec.checker.checker import analyse
from cnnspec.checker.data import training_needs
from cnnspec.checker.graph import Graph
from cnnspec.checker.weights import check_weights
from cnnspec.errors import CnnspecError, Diagnostic, in_category
from cnnspec.spec.overrides import loads_with_overrides, spec_file_text


def validate_file(
    path: str | Path, overrides: Sequence[str] = (), *, for_training: bool = False
) -> tuple[Graph | None, list[Diagnostic]]:
    """Every diagnostic for one spec file, with `--set` overrides applied as train applies them;
    the graph when loading succeeded. `for_training` (`validate --for train`) adds what training
    needs beyond that (a data section, an image folder's train folder: `training_needs`)."""
    try:
        text, name = spec_file_text(path)  # read once: `-` (standard input) can be read only once
        spec = loads_with_overrides(text, name, overrides)
    except CnnspecError as exc:
        return None, exc.diagnostics
    graph, diagnostics = analyse(spec)
    diagnostics += in_category("checkpoint", check_weights(spec))
    if for_training:
        checked = not any(d.severity == "error" for d in diagnostics)  # a broken graph's output says nothing
        diagnostics += in_category("data", training_needs(spec, graph if checked else None))
    if spec.sweep is not None:  # every search-space path names a key the spec can have
        from cnnspec.sweep.space import check_paths

        try:
            check_paths(spec, text, name)
        except CnnspecError as exc:
            diagnostics += exc.diagnostics
    return graph, diagnostics


def as_errors(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    """`validate --strict`: every warning becomes an error (its message, location and hint unchanged)."""
    return [replace(d, severity="error") for d in diagnostics]


def github_annotation(d: Diagnostic) -> str:
    """A GitHub Actions workflow command that annotates the line in a pull request."""

    def esc(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return esc(text).replace(":", "%3A").replace(",", "%2C")

    parts = []
    if d.location is not None:
        parts.append(f"file={prop(d.location.file)}")
        if d.location.line:
            parts += [f"line={d.location.line}", f"col={d.location.col}"]
    body = d.message + "".join(f"\nnote: {n}" for n in d.notes) + (f"\nhint: {d.hint}" if d.hint else "")
    level = "error" if d.severity == "error" else "warning"
    return f"::{level} {','.join(parts)}::{esc(body)}"
