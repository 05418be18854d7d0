"""Layer kinds and augmentations share one registry type: a taken name is refused in both families,
and a single list item (whose wrapper class is made on first use) pickles into a fresh process."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cnnspec.augments import AUGMENTS, AugmentKind
from cnnspec.augments import register as register_augment
from cnnspec.layers import REGISTRY, LayerKind, register
from cnnspec.spec.dispatch import Kind, KindClash
from cnnspec.spec.load import load

ROOT = Path(__file__).resolve().parents[2]


class MyRelu(LayerKind):
    kind: ClassVar[str] = "relu"


class MyCutout(AugmentKind):
    kind: ClassVar[str] = "cutout"


@pytest.mark.parametrize(
    ("decorator", "registry", "cls", "message"),
    [
        (register, REGISTRY, MyRelu, "layer kind 'relu' is already registered by ReLU"),
        (register_augment, AUGMENTS, MyCutout, "augmentation 'cutout' is already registered by Cutout"),
    ],
    ids=["layer kind", "augmentation"],
)
def test_a_taken_name_is_refused(decorator: Any, registry: dict[str, type], cls: type[Kind], message: str) -> None:
    before = registry[cls.kind]
    with pytest.raises(KindClash, match=message):
        decorator(cls)
    assert registry[cls.kind] is before


def test_single_items_pickle_into_a_fresh_process(tmp_path: Path) -> None:
    spec = load(ROOT / "specs" / "small_cnn.yaml")
    assert spec.data is not None
    items = [spec.model.layers[0], spec.data.augment[0]]
    blob = tmp_path / "items.pkl"
    blob.write_bytes(pickle.dumps(items))
    code = (
        "import pickle, sys; items = pickle.load(open(sys.argv[1], 'rb'));"
        "print(repr([(type(i).__name__, i.model_dump()) for i in items]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(blob)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(
        [("Conv2dLayer", items[0].model_dump()), ("RandomCropAugment", items[1].model_dump())]
    )
