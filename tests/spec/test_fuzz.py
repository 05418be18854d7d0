"""Fuzzing the static path (issue 7 item 2).

1. Specs generated from schemas/cnnspec.schema.json load and check without a traceback, and
   the loader never calls a key or kind the schema allows unknown.
2. Valid specs from specs/ are mutated (a key or item dropped, a key written twice or an
   item duplicated, a value retyped, a key renamed); every error the loader reports is at
   the mutated node (or inside it, or at the mapping that holds it).

Only CnnspecError may escape; anything else fails the test with its traceback. Totals are
printed (`pytest -s`) for docs/reliability.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnspec.check.checker import analyse
from cnnspec.errors import CnnspecError, SpecError
from cnnspec.spec.load import loads
from cnnspec.spec.source import parse_yaml, read_spec_text
from tests.spec.spec_fuzzing import DUPLICATE, Written, from_schema, write

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "cnnspec.schema.json").read_text(encoding="utf-8"))
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml"))
ORIGINALS = {p.name: parse_yaml(read_spec_text(p), p.name)[0] for p in SPEC_FILES}

SCHEMA_EXAMPLES = 700
MUTATION_EXAMPLES = 350  # per kind of mutation, four kinds
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is a bug, not luck
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
Path_ = tuple[Hashable, ...]
outcomes: Counter[str] = Counter()


SCHEMA_MESSAGES = ("unknown key", "missing required key", "unknown layer kind", "unknown augmentation")


def run(text: str, file: str) -> list[Any]:
    """Load and check like `cnnspec validate`; the errors about values rather than shapes.

    That is every loader error, and the checker's schema errors (a block's layers are
    validated when the block is used). Shape and graph errors can land far from a
    change (drop a padding and a later layer no longer fits): they are only required to
    be located.
    """
    try:
        spec = loads(text, file)
    except SpecError as exc:
        return exc.diagnostics
    _, diagnostics = analyse(spec)  # checker problems: reported, not raised
    for d in diagnostics:
        assert d.location is not None and d.location.file == file and d.location.line >= 1, d.format()
    errors = [d for d in diagnostics if d.severity == "error"]
    outcomes["checked" if not errors else "checker errors"] += 1
    return [d for d in errors if d.message.startswith(SCHEMA_MESSAGES) or ": expected " in d.message]


# --- 1. from the JSON Schema --------------------------------------------------------------


@pytest.mark.slow
@settings(FUZZ, max_examples=SCHEMA_EXAMPLES)
@given(from_schema(SCHEMA))
def test_specs_generated_from_the_schema(data: dict[str, Any]) -> None:
    outcomes["schema examples"] += 1
    written = write(data)
    try:
        errors = run(written.text, "generated.yaml")
    except CnnspecError:  # pragma: no cover - run() returns loader errors; anything else is a bug
        raise
    for d in errors:
        assert d.location is not None and d.location.line >= 1, d.format()
        # The schema's vocabulary is the loader's: what one allows, the other knows.
        assert not d.message.startswith(("unknown key", "unknown layer kind", "unknown augmentation")), (
            d.format() + "\n" + written.text
        )
    outcomes["schema: refused by a rule the schema cannot state" if errors else "schema: loaded"] += 1


def test_schema_examples_ran() -> None:
    """Reported after the fuzz test above (pytest runs tests in file order)."""
    if outcomes["schema examples"]:
        assert outcomes["schema examples"] >= SCHEMA_EXAMPLES
        print(f"\nRELIABILITY fuzz from schema: {outcomes['schema examples']} specs, 0 tracebacks; {dict(outcomes)}")


# --- 2. mutations of valid specs ----------------------------------------------------------


def paths_of(data: Any, path: Path_ = ()) -> list[Path_]:
    """Every node below the root: mapping entries and list items, depth first."""
    out: list[Path_] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.append((*path, k))
            out += paths_of(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.append((*path, i))
            out += paths_of(v, (*path, i))
    return out


def get(data: Any, path: Path_) -> Any:
    for p in path:
        data = data[p]
    return data


def replaced(data: Any, path: Path_, fn: Any) -> Any:
    """A deep copy of `data` with the container holding `path` changed by fn(container, last)."""
    copy = json.loads(json.dumps(data))
    fn(get(copy, path[:-1]), path[-1])
    return copy


REPLACEMENTS: list[Any] = ["text", 7, -3, 0, 2.5, True, None, [1, 2], {"x": 1}, [], {}]


def kind_of(value: Any) -> str:
    return "bool" if isinstance(value, bool) else type(value).__name__


def allowed_at(written: Written, node: Path_, *, key: bool = False) -> set[tuple[int, int]]:
    """Where errors about a change at `node` may point: the node, anything inside it, its parent."""
    spots = {pos for p, pos in written.values.items() if p[: len(node)] == node}
    spots |= {pos for p, pos in written.keys.items() if p[: len(node)] == node}
    if len(node) >= 1 and node[:-1] in written.values:
        spots.add(written.values[node[:-1]])
    return spots


def check_located(errors: list[Any], spots: set[tuple[int, int]], text: str, what: str) -> None:
    for d in errors:
        assert d.location is not None
        assert (d.location.line, d.location.col) in spots, f"{what}: {d.format()}\nallowed {sorted(spots)}\n{text}"


def mutation_case(kind: str) -> Any:
    @st.composite
    def case(draw: Any) -> tuple[str, Path_, Any]:
        name = draw(st.sampled_from(sorted(ORIGINALS)))
        data = ORIGINALS[name]
        paths = paths_of(data)
        if kind == "rename" or kind == "duplicate key":
            paths = [p for p in paths if isinstance(p[-1], str)]
        path = draw(st.sampled_from(paths))
        extra = None
        if kind == "retype":
            old = kind_of(get(data, path))
            extra = draw(st.sampled_from([r for r in REPLACEMENTS if kind_of(r) != old]))
        elif kind == "rename":
            extra = draw(st.sampled_from(["colour", "kernal_size", "x", "Layers", "out_channel", "nmae", "strides"]))
            if extra in get(data, path[:-1]):
                extra = extra + "_2"
        return name, path, extra

    return case()


def mutate(kind: str, name: str, path: Path_, extra: Any) -> tuple[Written, set[tuple[int, int]]]:
    """The mutated spec as YAML, and the positions its loader errors may have."""
    data = ORIGINALS[name]
    if kind == "drop":
        new = replaced(data, path, lambda c, k: c.pop(k))
        written = write(new)
        # A dropped key leaves its mapping short of it: the mapping (or a mapping above) says so.
        spots = {written.values[path[:i]] for i in range(len(path)) if path[:i] in written.values}
        return written, spots
    if kind == "duplicate key":
        written = write(data, duplicate=path)
        return written, {written.keys[(*path, DUPLICATE)]}
    if kind == "duplicate item":
        new = replaced(data, path, lambda c, k: c.insert(k + 1, json.loads(json.dumps(c[k]))))
        written = write(new)
        last = path[-1]
        assert isinstance(last, int)
        copy = (*path[:-1], last + 1)
        return written, allowed_at(written, copy) | allowed_at(written, path)
    if kind == "retype":
        new = replaced(data, path, lambda c, k: c.__setitem__(k, json.loads(json.dumps(extra))))
        written = write(new)
        return written, allowed_at(written, path)
    if kind == "rename":

        def rename(c: dict[str, Any], k: str) -> None:
            items = list(c.items())
            c.clear()
            c.update({(extra if key == k else key): v for key, v in items})

        new = replaced(data, path, rename)
        written = write(new)
        return written, allowed_at(written, (*path[:-1], extra))
    raise AssertionError(kind)


def fuzz_mutation(kind: str, case: tuple[str, Path_, Any]) -> None:
    name, path, extra = case
    outcomes[f"mutation: {kind}"] += 1
    written, spots = mutate(kind, name, path, extra)
    errors = run(written.text, f"mutated-{name}")
    check_located(errors, spots, written.text, f"{kind} {path} {extra!r} in {name}")
    outcomes[f"mutation: {kind}: refused, at the node" if errors else f"mutation: {kind}: accepted"] += 1


@pytest.mark.slow
@settings(FUZZ, max_examples=MUTATION_EXAMPLES)
@given(mutation_case("drop"))
def test_drop_a_node(case: tuple[str, Path_, Any]) -> None:
    fuzz_mutation("drop", case)


@pytest.mark.slow
@settings(FUZZ, max_examples=MUTATION_EXAMPLES // 2)
@given(mutation_case("duplicate key"))
def test_write_a_key_twice(case: tuple[str, Path_, Any]) -> None:
    fuzz_mutation("duplicate key", case)


@pytest.mark.slow
@settings(FUZZ, max_examples=MUTATION_EXAMPLES // 2)
@given(mutation_case("duplicate item"))
def test_duplicate_a_node(case: tuple[str, Path_, Any]) -> None:
    name, path, extra = case
    # Only list items can be duplicated as a copy: take the innermost one holding the drawn node.
    items = [path[:i] for i in range(len(path), 0, -1) if isinstance(path[i - 1], int)]
    if not items:
        return fuzz_mutation("duplicate key", case)
    fuzz_mutation("duplicate item", (name, items[0], extra))


@pytest.mark.slow
@settings(FUZZ, max_examples=MUTATION_EXAMPLES)
@given(mutation_case("retype"))
def test_retype_a_node(case: tuple[str, Path_, Any]) -> None:
    fuzz_mutation("retype", case)


@pytest.mark.slow
@settings(FUZZ, max_examples=MUTATION_EXAMPLES)
@given(mutation_case("rename"))
def test_rename_a_key(case: tuple[str, Path_, Any]) -> None:
    fuzz_mutation("rename", case)


def test_fuzz_totals() -> None:
    """Printed last: the number of examples of this run (slow tests included)."""
    total = outcomes["schema examples"] + sum(v for k, v in outcomes.items() if k.count(":") == 1 and "mutation" in k)
    if total:
        print(f"\nRELIABILITY fuzz total: {total} examples, 0 tracebacks; {dict(sorted(outcomes.items()))}")
        assert total >= 2000
