"""Load a spec: YAML text → plain data with positions → validated `Spec`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cnnspec.errors import Diagnostic, Location, SpecError
from cnnspec.spec.interp import explain
from cnnspec.spec.model import Spec
from cnnspec.spec.resolve import resolve
from cnnspec.spec.source import SourceMap, parse_yaml, read_spec_text


def _refuse_broken_plugins() -> None:
    """A spec is never read with part of the installed layer kinds missing."""
    from cnnspec.layers.plugins import refuse_problems

    refuse_problems()


def load(path: str | Path) -> Spec:
    """Read and validate a spec file; raises SpecError with every problem located."""
    return loads(read_spec_text(path), str(path))


def loads(text: str, file: str = "<string>") -> Spec:
    """Validate spec text; `file` names it in messages."""
    data, source = parse_yaml(text, file)
    return from_data(data, source)


def from_data(data: Any, source: SourceMap) -> Spec:
    """Validate already-parsed data against the schema."""
    _refuse_broken_plugins()
    if data is None:
        raise SpecError(
            Diagnostic(
                "the spec is empty", Location(source.file, 1, 1), hint="a spec needs at least `name` and `model`"
            )
        )
    if not isinstance(data, dict):
        raise SpecError(
            Diagnostic(
                f"a spec is a mapping of keys (name, model, …), not {_KINDS.get(type(data), 'a value')}",
                source.locate(()),
            )
        )
    written = data
    data, resolution = resolve(data, source)
    problems = list(source.problems) + resolution.diagnostics
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        from cnnspec.spec.errors_map import diagnostics_from  # only on errors: it costs import time

        # A value already reported as unreadable (or as a broken expression) is not reported
        # again as the wrong type.
        found = diagnostics_from(exc, data, source, Spec, skip=source.problem_paths | resolution.failed)
        found = explain(found, resolution.by_location())
        raise SpecError(sorted(problems + found, key=_position)) from None
    if problems:
        raise SpecError(sorted(problems, key=_position))
    spec._source = source
    if resolution.evaluated or "vars" in written:
        spec._written = written
        spec._evaluated = {path: record.text for path, record in resolution.evaluated.items()}
    return spec


_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}


def _position(d: Diagnostic) -> tuple[int, int]:
    return (d.location.line, d.location.col) if d.location else (0, 0)
