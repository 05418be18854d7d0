"""Each diagnostic says what it is about (its category) and so which exception class reports it;
`check` raises the class of the problem, not ShapeError for everything (issue 13 item 6)."""

from __future__ import annotations

from typing import get_args

import pytest

import cnnspec
from cnnspec.errors import (
    CATEGORIES,
    ERROR_CLASSES,
    Category,
    CnnspecError,
    DataError,
    Diagnostic,
    ShapeError,
    SpecError,
    TrainingError,
)


def _spec(layers: str, data: str = "", blocks: str = "") -> cnnspec.Spec:
    return cnnspec.loads(
        "name: t\nmodel:\n  input: {channels: 3, height: 8, width: 8}\n"
        + blocks
        + "  layers:\n"
        + "".join(f"    {line}\n" for line in layers.strip("\n").splitlines())
        + data,
        "t.yaml",
    )


def _raised(spec: cnnspec.Spec) -> CnnspecError:
    with pytest.raises(CnnspecError) as info:
        cnnspec.check(spec)
    return info.value


DIGITS = "data: {dataset: {name: digits}}\n"  # 1×8×8 images


@pytest.mark.parametrize(
    ("layers", "data", "blocks", "raised", "category", "message"),
    [
        ("- conv2d: {out_channels: 4, kernel_size: 9}", "", "", ShapeError, "shape", "conv2d output would be"),
        ("- relu: {id: forward}", "", "", ShapeError, "graph", "the id 'forward'"),
        ("- relu: {id: a}\n- add: {inputs: [a, b]}", "", "", SpecError, "reference", "unknown layer id 'b'"),
        ("- block: {name: nope}", "", "", SpecError, "reference", "unknown block 'nope'"),
        (
            "- block: {name: b}",
            "",
            "  blocks:\n    b:\n      layers: [conv2d: {out_channels: 4, kernel_sise: 1}]\n",
            SpecError,
            "spec",
            "unknown key 'kernel_sise'",
        ),
        ("- flatten\n- linear: {out_features: 10}", DIGITS, "", DataError, "data", "have 1 channel"),
    ],
    ids=["shape", "graph", "reference", "block", "block-schema", "data"],
)
def test_check_raises_the_class_of_the_problem_and_each_diagnostic_says_its_category(
    layers: str, data: str, blocks: str, raised: type[CnnspecError], category: Category, message: str
) -> None:
    exc = _raised(_spec(layers, data, blocks))
    assert type(exc) is raised
    (d,) = exc.diagnostics
    assert message in d.message
    assert (d.category, d.error_class) == (category, raised)


def test_a_spec_with_problems_of_several_kinds_raises_the_first_ones_class_and_keeps_each_category() -> None:
    exc = _raised(_spec("- conv2d: {out_channels: 4, kernel_size: 1, inputs: [nope]}\n- relu\n", DIGITS))
    assert type(exc) is SpecError
    assert [(d.category, d.error_class) for d in exc.diagnostics] == [
        ("reference", SpecError),
        ("data", DataError),
    ]


def test_the_memory_limit_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSPEC_MAX_MEMORY", "1KiB")
    exc = _raised(_spec("- conv2d: {out_channels: 64, kernel_size: 3}"))
    assert type(exc) is DataError
    assert {d.category for d in exc.diagnostics} == {"memory"}


def test_every_category_belongs_to_one_class_and_an_error_stamps_its_own_on_diagnostics_without_one() -> None:
    assert set(ERROR_CLASSES) == set(CATEGORIES) == set(get_args(Category))
    exc = TrainingError([Diagnostic("a"), Diagnostic("b", category="memory")])
    assert [d.category for d in exc.diagnostics] == ["training", "memory"]
    assert CnnspecError("plain").diagnostics[0].error_class is CnnspecError
    with pytest.raises(TypeError, match="belongs to SpecError"):

        class Again(CnnspecError, categories=("reference",)):  # a category has one class
            pass


def test_a_suggestion_is_a_field_and_the_hint_says_it_without_dropping_a_given_hint() -> None:
    exc = _raised(_spec("- relu: {id: stem}\n- add: {inputs: [stem, stme]}"))
    (d,) = exc.diagnostics
    assert (d.suggestion, d.hint) == ("stem", "did you mean 'stem'?")
    both = Diagnostic("x", hint="or list it", suggestion="relu")
    assert both.hint == "did you mean 'relu'?; or list it"
    from dataclasses import replace

    assert replace(both, notes=("n",)).hint == both.hint  # said once, however often it is copied


def test_a_misspelt_key_in_the_file_carries_the_key_it_meant() -> None:
    with pytest.raises(SpecError) as info:
        _spec("- conv2d: {out_channels: 4, kernel_sise: 1}")
    (d,) = info.value.diagnostics
    assert (d.category, d.suggestion, d.hint) == ("spec", "kernel_size", "did you mean 'kernel_size'?")
