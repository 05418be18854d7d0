"""`--set KEY=VALUE`: applied to the parsed YAML, validated by the same schema, errors located at the --set."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnspec.checker.checker import check
from cnnspec.errors import ShapeError, SpecError
from cnnspec.spec.load import load
from cnnspec.spec.overrides import load_with_overrides, override_spec, parse_override

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_scalars_lists_and_nested_keys_are_set() -> None:
    spec = load_with_overrides(
        SPECS / "small_cnn.yaml",
        [
            "optimizer.lr=0.05",
            "train.epochs=3",
            "train.grad_clip=1.5",
            "schedule.milestones=[30, 60]",
            "model.layers.0.conv2d.out_channels=16",
            "data.normalize.mean=[0.5, 0.5, 0.5]",
            "data.normalize.std=[0.25, 0.25, 0.25]",
            "data.augment.1.horizontal_flip.p=0.25",
            "model.layers.2.relu.id=act1",  # a bare `- relu` item gets a mapping
        ],
    )
    assert spec.optimizer.lr == 0.05
    assert spec.train.epochs == 3
    assert spec.train.grad_clip == 1.5
    assert spec.schedule.milestones == [30, 60]
    assert spec.model.layers[0].layer.out_channels == 16  # type: ignore[attr-defined]
    assert spec.data is not None and spec.data.normalize.mean == [0.5, 0.5, 0.5]  # type: ignore[union-attr]
    assert spec.data.augment[1].op.p == 0.25  # type: ignore[attr-defined]
    assert spec.model.layers[2].layer.id == "act1"
    assert check(spec).node("conv1").output_shape == (16, 32, 32)


def test_values_are_yaml_scalars() -> None:
    assert parse_override("train.compile=true") == (["train", "compile"], True)
    assert parse_override("train.grad_clip=") == (["train", "grad_clip"], None)
    assert parse_override("optimizer.lr=1e-3") == (["optimizer", "lr"], 0.001)
    assert parse_override("a.b='007'") == (["a", "b"], "007")


def test_torchvision_weights_by_list_index() -> None:
    spec = load_with_overrides(SPECS / "resnet18_transfer.yaml", ["model.layers.0.torchvision.weights=none"])
    assert spec.model.layers[0].layer.weights == "none"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("override", "message", "hint"),
    [
        ("optimizer.lrr=0.05", "unknown key 'lrr' in optimizer", "did you mean 'lr'?"),
        ("trian.epochs=3", "unknown key 'trian' in the spec", "did you mean 'train'?"),
        ("data.augment.0.random_crop.sizee=3", "unknown key 'sizee'", "did you mean 'size'?"),
        ("model.layers.99.conv2d.out_channels=1", "model.layers has 13 items: index 99 is out of range", None),
        ("model.layers.0.torchvision.weights=none", "model.layers.0 is a conv2d, not a torchvision", None),
        ("model.layers.x.conv2d.out_channels=1", "model.layers is a list: 'x' is not an index", None),
        ("optimizer.lr", "an override is KEY=VALUE", None),
        ("optimizer..lr=1", "is not a dotted key path", None),
    ],
)
def test_bad_keys_are_errors_with_suggestions(override: str, message: str, hint: str | None) -> None:
    with pytest.raises(SpecError) as info:
        load_with_overrides(SPECS / "small_cnn.yaml", [override])
    (diag,) = info.value.diagnostics
    assert message in diag.message
    assert diag.location is not None and str(diag.location) == f"--set {override}"
    if hint is not None:
        assert diag.hint == hint


@pytest.mark.parametrize(
    ("override", "message", "hint"),
    [
        # A path through a scalar (was "optimizer.lr: expected a number" at the file's line, the
        # value silently replaced by a mapping).
        ("optimizer.lr.x=1", "optimizer.lr is a number (0.1), it has no key 'x'", "--set optimizer.lr=VALUE"),
        ("optimizer.lr.x.y=1", "optimizer.lr is a number (0.1), it has no key 'x'", "--set optimizer.lr=VALUE"),
        ("name.first=a", "name is a string ('small-cnn'), it has no key 'first'", "--set name=VALUE"),
        ("train.amp.0=1", "train.amp is a string ('auto'), it has no item 0", "--set train.amp=VALUE"),
        ("train.epochs.0=1", "train.epochs is a number (100), it has no item 0", "--set train.epochs=VALUE"),
        ("export.dynamic_batch.on=1", "export.dynamic_batch is a boolean (true), it has no key 'on'", None),
        # An index into a list the spec does not have.
        ("optimizer.betas.1=0.9", "optimizer.betas is not set, so it has no item 1", "--set optimizer.betas=[...]"),
        # Indices are ASCII digits: int('²') was a ValueError traceback.
        ("model.layers.².conv2d.out_channels=1", "model.layers is a list: '²' is not an index", None),
        ("model.layers.٣.conv2d.out_channels=1", "model.layers is a list: '٣' is not an index", None),
        ("data.augment.5.horizontal_flip.p=1", "data.augment has 2 items: index 5 is out of range", None),
        ("data.augment.x=1", "data.augment is a list: 'x' is not an index", "set the whole list: --set data.augment="),
    ],
)
def test_paths_through_values_and_lists_are_located_errors(override: str, message: str, hint: str | None) -> None:
    with pytest.raises(SpecError) as info:
        load_with_overrides(SPECS / "small_cnn.yaml", [override])
    (diag,) = info.value.diagnostics
    assert diag.message == message or diag.message.startswith(message), diag.message
    assert diag.location is not None and str(diag.location) == f"--set {override}"
    if hint is not None:
        assert diag.hint is not None and hint in diag.hint, diag.hint


def test_errors_in_what_an_override_created_point_at_it() -> None:
    # small_cnn has `normalize: none`: setting only the mean makes a mapping that lacks std. The error
    # is about data.normalize, which the override wrote, not the file (it used to name the file's line).
    with pytest.raises(SpecError) as info:
        load_with_overrides(SPECS / "small_cnn.yaml", ["data.normalize.mean=[0.5, 0.5, 0.5]"])
    text = info.value.format()
    assert text.startswith("--set data.normalize.mean=[0.5, 0.5, 0.5]: error: ") and "std" in text, text


def test_bad_values_fail_validation_at_the_set() -> None:
    with pytest.raises(SpecError) as info:
        load_with_overrides(SPECS / "small_cnn.yaml", ["data.batch_size=-3", "optimizer.lr=abc"])
    text = info.value.format()
    assert "--set data.batch_size=-3: error: data.batch_size should be greater than 0" in text
    assert "--set optimizer.lr=abc: error: optimizer.lr: " in text and "abc" in text


def test_shape_errors_from_an_override_point_at_it() -> None:
    spec = load_with_overrides(SPECS / "small_cnn.yaml", ["model.layers.9.linear.in_features=5"])
    with pytest.raises(ShapeError) as info:
        check(spec)
    assert info.value.format().startswith(
        "--set model.layers.9.linear.in_features=5: error: linear expects in_features=5"
    )


def test_untouched_values_keep_their_file_positions() -> None:
    spec = load_with_overrides(SPECS / "small_cnn.yaml", ["optimizer.lr=0.05", "model.layers.9.linear.out_features=7"])
    assert str(spec.source.locate(("model", "layers", 0))).startswith(str(SPECS / "small_cnn.yaml") + ":")


def test_override_spec_on_a_loaded_spec() -> None:
    spec = load(SPECS / "digits.yaml")
    changed = override_spec(spec, ["train.epochs=1", "data.batch_size=16"])
    assert (changed.train.epochs, changed.data.batch_size) == (1, 16)  # type: ignore[union-attr]
    assert changed.model == spec.model
    assert override_spec(spec, []) is spec
