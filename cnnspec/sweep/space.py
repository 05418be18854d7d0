"""A sweep's search space: draws for one trial, applied to the spec with the `--set` machinery, then checked."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnspec.errors import CnnspecError, Diagnostic, SpecError
from cnnspec.spec.overrides import apply_overrides, override_spec
from cnnspec.spec.source import parse_yaml

if TYPE_CHECKING:
    import optuna

    from cnnspec.spec.model import SearchRange, Spec, SweepSpec


def sweep_of(spec: Spec) -> SweepSpec:
    """The spec's sweep section; a located SpecError when it has none."""
    if spec.sweep is None:
        raise SpecError(
            Diagnostic(
                "the spec has no sweep: section",
                spec.source.locate(()),
                hint="add sweep: {space: {optimizer.lr: {log_uniform: [1.0e-4, 1.0e-1]}}}",
            )
        )
    return spec.sweep


def assignment(path: str, value: Any) -> str:
    """The `--set` text that gives `path` the value (a YAML flow scalar: repr keeps floats exact)."""
    text = (
        repr(value)
        if isinstance(value, float)
        else ("true" if value is True else "false" if value is False else str(value))
    )
    return f"{path}={text}"


def _example(rng: SearchRange) -> Any:
    bounds = rng.log_uniform or rng.uniform or rng.int_
    return bounds[0] if bounds is not None else rng.choice[0]  # type: ignore[index]


def check_paths(spec: Spec, text: str, file: str) -> None:
    """Every space path names a key the spec's schema knows; errors located at the space entry."""
    data, source = parse_yaml(text, file)
    problems: list[Diagnostic] = []
    for path, rng in sweep_of(spec).space.items():
        try:
            apply_overrides(copy.deepcopy(data), source, [assignment(path, _example(rng))])
        except SpecError as exc:
            for d in exc.diagnostics:
                problems.append(
                    Diagnostic(
                        f"sweep.space: {d.message}",
                        spec.source.locate(("sweep", "space", path), key=True),
                        hint=d.hint,
                        suggestion=d.suggestion,
                    )
                )
    if problems:
        raise SpecError(problems)


def suggest(trial: optuna.Trial, sweep: SweepSpec) -> dict[str, Any]:
    """The trial's value for each path of the space."""
    values: dict[str, Any] = {}
    for path, rng in sweep.space.items():
        if rng.log_uniform is not None:
            values[path] = trial.suggest_float(path, *rng.log_uniform, log=True)
        elif rng.uniform is not None:
            values[path] = trial.suggest_float(path, *rng.uniform)
        elif rng.int_ is not None:
            values[path] = trial.suggest_int(path, *rng.int_)
        else:
            values[path] = trial.suggest_categorical(path, rng.choice)  # type: ignore[arg-type]
    return values


@dataclass(frozen=True)
class Candidate:
    """A trial's spec, or why it cannot be trained, and how long finding out took."""

    spec: Spec | None
    error: str | None
    check_ms: float


def candidate(spec: Spec, values: dict[str, Any]) -> Candidate:
    """The spec with `values` set (validated like `--set`) and statically checked (shapes, data): no torch."""
    from cnnspec.checker.checker import check

    start = time.perf_counter()
    try:
        trial_spec = override_spec(spec, [assignment(p, v) for p, v in values.items()])
        check(trial_spec)
    except CnnspecError as exc:
        return Candidate(None, exc.format(), (time.perf_counter() - start) * 1000)
    return Candidate(trial_spec, None, (time.perf_counter() - start) * 1000)


def best_spec_text(text: str, file: str, values: dict[str, Any]) -> str:
    """The original spec as written (vars and expressions kept) with `values` set, and no sweep section."""
    import io

    from ruamel.yaml import YAML

    data, source = parse_yaml(text, file)
    data, _ = apply_overrides(data, source, [assignment(p, v) for p, v in values.items()])
    data.pop("sweep", None)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined,assignment]
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()
