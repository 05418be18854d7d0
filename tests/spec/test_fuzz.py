"""Fuzzing the static path (issue 7 item 2).

1. Specs generated from schemas/cnnspec.schema.json load and check without a traceback, and
   the loader never calls a key or kind the schema allows unknown.
2. Valid specs from specs/ are mutated (a key or item dropped, a key written twice or an
   item duplicated, a value retyped, a key renamed); every error the loader reports is at
   the mutated node (or inside it, or at the mapping that holds it).

The loader's errors (SpecError) are returned; any other exception, a CnnspecError included,
fails the test with its traceback. Each fuzz test runs its hypothesis search itself and
asserts that all of its examples ran; figures are printed (`pytest -s`) for docs/reliability.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnspec.checker.checker import analyse
from cnnspec.errors import SpecError
from cnnspec.spec.load import loads
from cnnspec.spec.source import parse_yaml, read_spec_text
from tests.spec.spec_fuzzing import DUPLICATE, Written, from_schema, write

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "cnnspec.schema.json").read_text(encoding="utf-8"))
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml"))
ORIGINALS = {p.name: parse_yaml(read_spec_text(p), p.name)[0] for p in SPEC_FILES}

# Examples per fuzz test: 700 from the schema, 1,400 mutations (350 per kind of mutation; writing
# a key twice and duplicating a node share one kind).
EXAMPLES = {"schema": 700, "drop": 350, "duplicate key": 175, "duplicate item": 175, "retype": 350, "rename": 350}
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is a bug, not luck
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
Path_ = tuple[Hashable, ...]
outcomes: Counter[str] = Counter()
examples: Counter[str] = Counter()  # bodies of each fuzz search run, by EXAMPLES key


def run_search(search: Callable[[], None], name: str) -> tuple[int, dict[str, int]]:
    """Run the hypothesis search `search` (its examples count under `name`): how many ran, and their outcomes.

    Fewer than EXAMPLES[name] fails: a strategy that filters too much or a space too small
    would otherwise pass having tried little.
    """
    ran_before, outcomes_before = examples[name], outcomes.copy()
    search()
    ran = examples[name] - ran_before
    assert ran >= EXAMPLES[name], f"{name}: hypothesis ran {ran} examples, not {EXAMPLES[name]}"
    return ran, dict(sorted((outcomes - outcomes_before).items()))


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


@settings(FUZZ, max_examples=EXAMPLES["schema"])
@given(from_schema(SCHEMA))
def search_the_schema(data: dict[str, Any]) -> None:
    examples["schema"] += 1
    written = write(data)
    errors = run(written.text, "generated.yaml")  # only the loader's SpecError is caught
    for d in errors:
        assert d.location is not None and d.location.line >= 1, d.format()
        # The schema's vocabulary is the loader's: what one allows, the other knows.
        assert not d.message.startswith(("unknown key", "unknown layer kind", "unknown augmentation")), (
            d.format() + "\n" + written.text
        )
    outcomes["schema: refused by a rule the schema cannot state" if errors else "schema: loaded"] += 1


@pytest.mark.slow
def test_specs_generated_from_the_schema() -> None:
    ran, figures = run_search(search_the_schema, "schema")
    print(f"\nRELIABILITY fuzz from schema: {ran} specs, 0 tracebacks; {figures}")


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


def variable_uses(data: Any, new: Any, written: Written, path: Path_) -> set[tuple[int, int]]:
    """Where the mutated spec `new` uses the variables a change at `path` (under `vars:` of `data`)
    takes away: an unknown variable is reported where it is used, as an undefined name is."""
    if not path or path[0] != "vars" or not isinstance(data.get("vars"), dict):
        return set()
    names = [str(path[1])] if len(path) > 1 else [str(k) for k in data["vars"]]
    uses = [
        (pos, len(v))
        for p, pos in written.values.items()
        if p[:1] != ("vars",) and isinstance(v := get(new, p), str) and "${" in v and any(n in v for n in names)
    ]
    # located at the name inside the expression: any column of the written value (quotes included)
    return {(line, col + i) for (line, col), width in uses for i in range(width + 3)}


def mutate(kind: str, name: str, path: Path_, extra: Any) -> tuple[Written, set[tuple[int, int]]]:
    """The mutated spec as YAML, and the positions its loader errors may have."""
    data = ORIGINALS[name]
    if kind == "drop":
        new = replaced(data, path, lambda c, k: c.pop(k))
        written = write(new)
        # A dropped key leaves its mapping short of it: the mapping (or a mapping above) says so.
        spots = {written.values[path[:i]] for i in range(len(path)) if path[:i] in written.values}
        return written, spots | variable_uses(data, new, written, path)
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
        return written, allowed_at(written, (*path[:-1], extra)) | variable_uses(data, new, written, path)
    raise AssertionError(kind)


def fuzz_mutation(kind: str, case: tuple[str, Path_, Any]) -> None:
    name, path, extra = case
    outcomes[f"mutation: {kind}"] += 1
    written, spots = mutate(kind, name, path, extra)
    errors = run(written.text, f"mutated-{name}")
    check_located(errors, spots, written.text, f"{kind} {path} {extra!r} in {name}")
    outcomes[f"mutation: {kind}: refused, at the node" if errors else f"mutation: {kind}: accepted"] += 1


@settings(FUZZ, max_examples=EXAMPLES["drop"])
@given(mutation_case("drop"))
def search_drop_a_node(case: tuple[str, Path_, Any]) -> None:
    examples["drop"] += 1
    fuzz_mutation("drop", case)


@settings(FUZZ, max_examples=EXAMPLES["duplicate key"])
@given(mutation_case("duplicate key"))
def search_write_a_key_twice(case: tuple[str, Path_, Any]) -> None:
    examples["duplicate key"] += 1
    fuzz_mutation("duplicate key", case)


@settings(FUZZ, max_examples=EXAMPLES["duplicate item"])
@given(mutation_case("duplicate item"))
def search_duplicate_a_node(case: tuple[str, Path_, Any]) -> None:
    examples["duplicate item"] += 1
    name, path, extra = case
    # Only list items can be duplicated as a copy: take the innermost one holding the drawn node.
    items = [path[:i] for i in range(len(path), 0, -1) if isinstance(path[i - 1], int)]
    if not items:
        return fuzz_mutation("duplicate key", case)
    fuzz_mutation("duplicate item", (name, items[0], extra))


@settings(FUZZ, max_examples=EXAMPLES["retype"])
@given(mutation_case("retype"))
def search_retype_a_node(case: tuple[str, Path_, Any]) -> None:
    examples["retype"] += 1
    fuzz_mutation("retype", case)


@settings(FUZZ, max_examples=EXAMPLES["rename"])
@given(mutation_case("rename"))
def search_rename_a_key(case: tuple[str, Path_, Any]) -> None:
    examples["rename"] += 1
    fuzz_mutation("rename", case)


MUTATION_SEARCHES = {
    "drop": search_drop_a_node,
    "duplicate key": search_write_a_key_twice,
    "duplicate item": search_duplicate_a_node,
    "retype": search_retype_a_node,
    "rename": search_rename_a_key,
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(MUTATION_SEARCHES))
def test_mutations_are_refused_at_the_mutated_node(kind: str) -> None:
    ran, figures = run_search(MUTATION_SEARCHES[kind], kind)
    print(f"\nRELIABILITY fuzz mutation {kind}: {ran} specs, 0 tracebacks; {figures}")


def test_a_renamed_key_in_a_block_is_located_at_the_key() -> None:
    """Found by test_mutations_are_refused_at_the_mutated_node[rename]: the key `out_channels:
    "$out_ch"` renamed inside a block was reported at the argument its value came from."""
    case = ("deeper_cnn.yaml", ("model", "blocks", "conv_block", "layers", 0, "conv2d", "out_channels"), "colour")
    written, spots = mutate("rename", *case)
    errors = run(written.text, "renamed.yaml")
    assert any(d.message.startswith("unknown key 'colour'") for d in errors)
    check_located(errors, spots, written.text, "rename in a block")


def test_the_fuzz_budget_is_2000_examples() -> None:
    """What the slow tests above run, each asserting that all of its examples ran."""
    assert set(EXAMPLES) == {"schema", *MUTATION_SEARCHES}
    assert sum(EXAMPLES.values()) >= 2000
