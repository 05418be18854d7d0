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
    """The `--set` text that gives `path` the value exactly: a YAML flow scalar of the same type (repr
    keeps floats exact; a string is quoted, so `"true"` or `"1"` stays a string)."""
    import json

    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        text = json.dumps(value)  # a double-quoted YAML scalar
    else:
        text = str(value)
    return f"{path}={text}"


EXACT_INT = 2**53  # optuna keeps an int draw as a float: beyond this some ints cannot be told apart
# Paths that change the sweep, not what a trial trains.
NOT_TRAINED = ("sweep", "name")


def _range_problems(spec: Spec, path: str, rng: SearchRange) -> list[Diagnostic]:
    """What optuna cannot draw exactly as written: a choice mixing booleans and numbers (True == 1 to
    optuna) or holding equal values, an int range beyond ±2**53; and a path the trials do not train."""
    where = ("sweep", "space", path)
    problems = []
    if path.split(".")[0] in NOT_TRAINED:
        problems.append(
            Diagnostic(
                f"sweep.space: {path} is not something a trial trains (it changes the sweep or its name)",
                spec.source.locate(where, key=True),
                hint="sweep a path of model, data, optimizer, train or vars",
            )
        )
    if rng.choice is not None:
        bools = [v for v in rng.choice if isinstance(v, bool)]
        numbers = [v for v in rng.choice if isinstance(v, int | float) and not isinstance(v, bool)]
        equal = [v for i, v in enumerate(rng.choice) if any(v == w for w in rng.choice[:i])]
        if bools and numbers:
            problems.append(
                Diagnostic(
                    "sweep.space: a choice mixes booleans and numbers (true equals 1 to optuna: the one drawn "
                    "would be recorded as the other)",
                    spec.source.locate((*where, "choice")),
                    hint="one type of value a choice",
                )
            )
        elif equal:
            problems.append(
                Diagnostic(
                    f"sweep.space: a choice holds {equal[0]!r} twice (equal values are one to optuna)",
                    spec.source.locate((*where, "choice")),
                    hint="list each value once",
                )
            )
    if rng.int_ is not None and any(abs(v) > EXACT_INT for v in rng.int_):
        problems.append(
            Diagnostic(
                f"sweep.space: an int range beyond ±2**53 ({EXACT_INT}): optuna keeps draws as floats, so the "
                "value shown would not be the value tried",
                spec.source.locate((*where, "int")),
                hint="bound the range to ±9007199254740992, or sweep a log_uniform and round it",
            )
        )
    return problems


def _example(rng: SearchRange) -> Any:
    bounds = rng.log_uniform or rng.uniform or rng.int_
    return bounds[0] if bounds is not None else rng.choice[0]  # type: ignore[index]


def check_paths(spec: Spec, text: str, file: str) -> None:
    """Every space path names a key the spec's schema knows and a thing a trial trains, and every range
    is one optuna draws exactly; errors located at the space entry."""
    data, source = parse_yaml(text, file)
    problems: list[Diagnostic] = []
    for path, rng in sweep_of(spec).space.items():
        problems += _range_problems(spec, path, rng)
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
    """The original spec as written (vars and expressions kept) with `values` set, no sweep section, and
    the paths it names made absolute: a relative path would resolve against the new file's folder."""
    import io

    from ruamel.yaml import YAML

    data, source = parse_yaml(text, file)
    data, _ = apply_overrides(data, source, [assignment(p, v) for p, v in values.items()])
    _absolute_paths(data, text, file, values)
    data.pop("sweep", None)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined,assignment]
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def _absolute_paths(data: dict[str, Any], text: str, file: str, values: dict[str, Any]) -> None:
    """Write into `data` (the spec as written) the absolute form of each path the spec names relative to
    its file's folder, or by default (data.dataset.root, data.cache_dir, model.weights)."""
    from cnnspec.spec.load import loads
    from cnnspec.spec.paths import absolute_paths

    spec = override_spec(loads(text, file), [assignment(p, v) for p, v in values.items()])
    fixed = absolute_paths(spec)
    if fixed.model.weights != spec.model.weights:
        data.setdefault("model", {})["weights"] = fixed.model.weights
    if fixed.data is not None and spec.data is not None and fixed.data is not spec.data:
        section = data.setdefault("data", {})
        if fixed.data.dataset.root != spec.data.dataset.root:
            section.setdefault("dataset", {})["root"] = fixed.data.dataset.root
        if fixed.data.cache_dir != spec.data.cache_dir:
            section["cache_dir"] = fixed.data.cache_dir
