"""'did you mean' hints propose a misspelt name's intended one, never a different function (issue 12)."""

from __future__ import annotations

import pytest

from cnnspec.errors import suggest, suggested_name
from cnnspec.layers import REGISTRY

KINDS = list(REGISTRY)


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("rellu", "relu"),  # a doubled letter
        ("batchnrom2d", "batchnorm2d"),  # two letters swapped
        ("conv2", "conv2d"),  # a dropped letter
        ("multipy", "multiply"),
        ("hardtan", "hardtanh"),
        ("leakyrelu", "leaky_relu"),  # the same name but for '_'
        ("Hard_Swish", "hardswish"),
        ("LayerNorm", "layernorm"),
        ("maxpool", "maxpool2d"),  # digits may be missing, not different
        ("split", "slice"),  # synonyms: torch's and Keras' names
        ("swish", "silu"),
        ("stochastic_depth", "drop_path"),
    ],
)
def test_a_misspelt_kind_gets_its_intended_name(written: str, meant: str) -> None:
    assert suggest(written, KINDS) == f"did you mean '{meant}'?"


@pytest.mark.parametrize(
    "written",
    [
        "relu8",  # other digits: a variant (relu6 exists)
        "conv1d",
        "conv3d",
        "maxpool3d",
        "selu",  # a letter replaced in a short name: silu, gelu, relu, elu are all different functions
        "celu",
        "rrelu",  # letters in front: a new name (RReLU, not ReLU)
        "logsigmoid",
        "logsoftmax",
        "tanhshrink",  # a long tail: another word
        "softsign",
        "hardshrink",
    ],
)
def test_another_function_gets_no_suggestion(written: str) -> None:
    assert written not in REGISTRY
    assert suggest(written, KINDS) is None


def test_the_kinds_named_in_issue_12_no_longer_get_a_wrong_hint() -> None:
    # relu6 and hardsigmoid are kinds now; before, they were 'did you mean relu/sigmoid?'
    assert {"relu6", "hardsigmoid"} <= set(REGISTRY)
    without = [k for k in KINDS if k not in ("relu6", "hardsigmoid")]
    assert suggest("relu6", without) is None
    assert suggest("hardsigmoid", without) is None


@pytest.mark.parametrize(
    ("written", "candidates", "meant"),
    [  # keys and values keep their hints (each is in tests/fixtures/invalid/ or the override tests)
        ("reflection", ["zeros", "reflect", "replicate", "circular"], "reflect"),
        ("out_chan", ["out_ch", "k"], "out_ch"),
        ("lrr", ["lr", "momentum"], "lr"),
        ("trian", ["train", "model"], "train"),
        ("epoch", ["epochs", "seed"], "epochs"),
        ("kernal_size", ["kernel_size", "stride"], "kernel_size"),
        ("cifar-10", ["cifar10", "cifar100"], "cifar10"),
    ],
)
def test_keys_and_values_keep_their_suggestions(written: str, candidates: list[str], meant: str) -> None:
    assert suggested_name(written, candidates) == meant
