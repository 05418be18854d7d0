"""Specs that validate but cannot run (issue 14, items 16 and 17): refused before anything is allocated.

`validate` refuses weights, one image's forward/backward pass or an in-memory dataset over
CNNSPEC_MAX_MEMORY (1 TiB); `train` refuses what the device cannot hold, a seed out of range, a
batch norm fed one value per channel, odd `--set` paths: each a located error from the real
console script, never a traceback, with nothing written.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cnnspec
from cnnspec.builder.graph_module import build
from cnnspec.checker.checker import check
from cnnspec.checker.memory import estimate, parse_size
from cnnspec.layers.backbone import BACKBONES
from cnnspec.spec.load import load
from cnnspec.training.callbacks import Callback, Step
from tests.train._train_helpers import THREADS_ENV

CNNSPEC = [sys.executable, "-m", "cnnspec"]
REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CNNSPEC, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **THREADS_ENV, **(env or {})},
        errors="backslashreplace",
    )


def _write(
    tmp_path: Path, layers: str, data: str, name: str = "s.yaml", input_: str = "3, height: 32, width: 32"
) -> Path:
    path = tmp_path / name
    path.write_text(
        f"name: big\nmodel:\n  input: {{channels: {input_}}}\n  layers:\n{layers}data:\n{data}train: {{epochs: 1}}\n",
        encoding="utf-8",
    )
    return path


SMALL = "    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}\n    - global_avgpool\n    - flatten\n"


def test_validate_refuses_ten_trillion_channels_at_the_layer(tmp_path: Path) -> None:
    spec = _write(
        tmp_path,
        "    - conv2d: {out_channels: 10000000000000, kernel_size: 3, padding: 1}\n    - global_avgpool\n"
        "    - flatten\n    - linear: {out_features: 10}\n",
        "  dataset: {name: synthetic}\n",
    )
    result = _cli("validate", str(spec))
    assert result.returncode == 1, result.stdout  # was "ok (… 380,000,000,000,010 params)"
    assert f"{spec}:5:15: error: the model's weights need 1.35 PiB (380,000,000,000,010 params × 4 bytes)" in (
        result.stdout + result.stderr
    )


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        ("  dataset: {name: synthetic, num_samples: 1000000000}\n", ":10:", "1,200,000,000 synthetic images"),
        ("  dataset: {name: synthetic, num_classes: 100000000}\n", ":10:", "100,000,000 float prototypes"),
        ("  dataset: {name: cifar10}\n  resize: [40000, 40000]\n", ":11:", "resized to 40000×40000"),
    ],
)
def test_validate_refuses_datasets_that_cannot_be_held(tmp_path: Path, data: str, where: str, what: str) -> None:
    classes = "100000000" if "num_classes" in data else "10"
    spec = _write(tmp_path, SMALL + f"    - linear: {{out_features: {classes}}}\n", data)
    result = _cli("validate", str(spec))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert f"{spec}{where}" in out and "error: the dataset needs" in out and what in out


def test_the_limit_is_cnnspec_max_memory(tmp_path: Path) -> None:
    spec = str(REPO / "specs" / "small_cnn.yaml")  # 2.08 MiB of weights
    assert _cli("validate", spec).returncode == 0
    low = _cli("validate", spec, env={"CNNSPEC_MAX_MEMORY": "1MiB"})
    assert low.returncode == 1 and "over the limit of 1.00 MiB" in low.stdout + low.stderr
    assert _cli("validate", spec, env={"CNNSPEC_MAX_MEMORY": "1GiB"}).returncode == 0  # CIFAR-10: 184 MB
    bad = _cli("validate", spec, env={"CNNSPEC_MAX_MEMORY": "lots"})
    assert bad.returncode == 1 and "CNNSPEC_MAX_MEMORY='lots' is not a size" in bad.stdout + bad.stderr
    assert parse_size("1TiB") == 2**40 and parse_size("500 GB") == 500 * 10**9 and parse_size("2e3") == 2000


def test_the_estimate_matches_the_built_model() -> None:
    """Weights = 4 × torch's parameter count; the pass = 2 × 4 × (input + every node module's output)."""
    spec = load(REPO / "specs" / "small_cnn.yaml")
    graph = check(spec)
    model = build(spec)
    sizes: list[int] = []
    for module in model.children():
        module.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
    model(torch.zeros(1, *spec.model.input.shape))
    est = estimate(graph)
    assert est.weights == 4 * sum(p.numel() for p in model.parameters())
    assert len(sizes) == len(graph.nodes)
    assert est.forward_backward == 2 * 4 * (math.prod(spec.model.input.shape) + sum(sizes))


def test_train_refuses_a_dataset_larger_than_the_memory_before_allocating(tmp_path: Path) -> None:
    # 10^8 images of 3×32×32: 368 GB, under validate's 1 TiB, over this machine's memory.
    spec = _write(
        tmp_path, SMALL + "    - linear: {out_features: 10}\n", "  dataset: {name: synthetic, num_samples: 100000000}\n"
    )
    assert _cli("validate", str(spec)).returncode == 0
    out = tmp_path / "run"
    result = _cli("train", str(spec), "--out", str(out), "--set", "train.device=cpu", timeout=60)
    assert result.returncode == 1, result.stderr
    assert "error: training needs an estimated" in result.stderr and "most of it is the dataset" in result.stderr
    assert f"{spec}:10:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "spec.yaml").exists() and not (out / "checkpoints").exists()


def test_train_refuses_activations_larger_than_the_memory(tmp_path: Path) -> None:
    # 2,048 channels of 512×512 per image: 4 GiB per image forward and backward, × 128 images.
    spec = _write(
        tmp_path,
        "    - conv2d: {out_channels: 2048, kernel_size: 3, padding: 1}\n    - global_avgpool\n    - flatten\n"
        "    - linear: {out_features: 10}\n",
        "  dataset: {name: synthetic, num_samples: 16}\n",
        input_="1, height: 512, width: 512",
    )
    result = _cli("train", str(spec), "--out", str(tmp_path / "run"), "--set", "train.device=cpu", timeout=60)
    assert result.returncode == 1, result.stderr
    assert "most of it is activations" in result.stderr
    assert "the largest output is 'conv2d_0' (conv2d): 2048×512×512 per image" in result.stderr
    assert "Traceback" not in result.stderr


def test_batch_norm_on_a_batch_of_one(tmp_path: Path) -> None:
    layers = "    - flatten\n    - linear: {out_features: 16}\n    - batchnorm1d\n    - linear: {out_features: 10}\n"
    static = _write(tmp_path, layers, "  dataset: {name: digits}\n  batch_size: 1\n", input_="1, height: 8, width: 8")
    result = _cli("validate", str(static))
    assert result.returncode == 1
    assert f"{static}:11:15: error: batchnorm1d 'batchnorm1d_2' would normalise a single value" in result.stdout + (
        result.stderr
    )
    # A training set of one image is one batch of one: refused before training, nothing written.
    one = _write(
        tmp_path,
        layers,
        "  dataset: {name: synthetic, num_samples: 1}\n  val_split: 0\n",
        name="one.yaml",
        input_="1, height: 8, width: 8",
    )
    assert _cli("validate", str(one)).returncode == 0
    out = tmp_path / "run"
    trained = _cli("train", str(one), "--out", str(out))
    assert trained.returncode == 1, trained.stderr  # was torch's "Expected more than 1 value per channel"
    assert "would normalise a single value per channel: a training batch of 1 image" in trained.stderr
    assert "Traceback" not in trained.stderr
    assert not (out / "spec.yaml").exists()


def test_image_folder_channels_the_files_cannot_supply(tmp_path: Path) -> None:
    spec = _write(
        tmp_path,
        SMALL + "    - linear: {out_features: 10}\n",
        f"  dataset: {{name: image_folder, root: '{tmp_path}'}}\n  resize: 32\n",
        input_="2, height: 32, width: 32",
    )
    result = _cli("validate", str(spec))
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "image_folder images are read as grey (1 channel) or RGB (3) but model.input has 2" in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.seed=99999999999999999999999999", "train.seed"),  # was torch's "Overflow when unpacking long long"
        ("train.seed=4294967296", "train.seed"),
        ('optimizer."lr"=0.1', "unknown key '\"lr\"' in optimizer"),
        ("optimizer['lr']=0.1", "hint: write --set optimizer.lr=0.1"),
        ("data.aug[0]=1", "hint: write --set data.aug.0=1"),
        ("optimizer.l\udcffr=1", "unknown key"),
        ("optimizé.lr=1", "unknown key 'optimizé'"),
        ("model.layers.0.conv2d.id=a.b", "an id may hold only"),
        ("name=\x1b[31m", "--set name="),
        ("optimizer.lr.x=1", "optimizer.lr is a number (0.005), it has no key 'x'"),  # was located at the file
        ("model.layers.².conv2d.out_channels=1", "'²' is not an index"),  # was int()'s ValueError, a traceback
    ],
)
def test_odd_set_paths_are_located_errors(tmp_path: Path, override: str, message: str) -> None:
    args = [*CNNSPEC, "train", str(REPO / "specs" / "digits.yaml"), "--out", str(tmp_path / "run"), "--set"]
    result = subprocess.run(
        [*(os.fsencode(a) for a in args), os.fsencode(override)],
        capture_output=True,
        timeout=120,
        env={**os.environ, **THREADS_ENV},
    )
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    assert result.returncode == 1, stderr
    assert stderr.startswith("--set ") and "error:" in stderr and message in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "run" / "spec.yaml").exists()


# A residual whose body halves 2×2 to 1×1 with more channels: `shortcut: auto` is a 1×1 conv + batch
# norm on 1×1 maps. The body itself holds no batch norm, so only the shortcut's can refuse.
SHORTCUT = (
    "    - residual:\n        id: res\n        body:\n"
    "          - conv2d: {out_channels: 4, kernel_size: 3, stride: 2, padding: 1}\n"
    "        shortcut: auto\n    - flatten\n    - linear: {out_features: 2}\n",
    "1, height: 2, width: 2",
    "shortcut 'res.downsample' would normalise a single value per channel",
)
# A torchvision backbone whose deepest stage is 1×1 at a 32×32 input (its classifier cut off).
BACKBONE = (
    "    - torchvision: {id: net, model: mobilenet_v3_small}\n    - linear: {out_features: 2}\n",
    "3, height: 32, width: 32",
    "torchvision 'net' would normalise a single value per channel",
)


@pytest.mark.parametrize(("layers", "input_", "message"), [SHORTCUT, BACKBONE], ids=["shortcut", "backbone"])
def test_batch_norm_inside_a_shortcut_or_a_backbone_on_a_batch_of_one(
    tmp_path: Path, layers: str, input_: str, message: str
) -> None:
    static = _write(tmp_path, layers, "  dataset: {name: synthetic, num_classes: 2}\n  batch_size: 1\n", input_=input_)
    result = _cli("validate", str(static))
    assert result.returncode == 1, result.stdout  # was "ok"
    assert f"{static}:" in result.stdout + result.stderr and message in result.stdout + result.stderr
    # One training image is a batch of one: refused before training, the run folder never made.
    one = _write(
        tmp_path,
        layers,
        "  dataset: {name: synthetic, num_samples: 1, num_classes: 2}\n  val_split: 0\n",
        name="one.yaml",
        input_=input_,
    )
    out = tmp_path / "run"
    trained = _cli("train", str(one), "--out", str(out))
    assert trained.returncode == 1, trained.stderr  # was torch's "Expected more than 1 value per channel"
    assert message + ": a training batch of 1 image through its 1×1 maps" in trained.stderr
    assert "Traceback" not in trained.stderr
    assert not out.exists()


@pytest.mark.parametrize(("layers", "input_", "message"), [SHORTCUT, BACKBONE], ids=["shortcut", "backbone"])
def test_33_images_in_batches_of_32_train_one_full_batch(
    tmp_path: Path, layers: str, input_: str, message: str
) -> None:
    """The last batch (one image) is dropped, so the batch norms never see a batch of one."""
    spec = _write(
        tmp_path,
        layers,
        "  dataset: {name: synthetic, num_samples: 33, num_classes: 2}\n  batch_size: 32\n  val_split: 0\n",
        input_=input_,
    )
    batches: list[int] = []

    class Sizes(Callback):
        def on_batch(
            self, step: Step, images: torch.Tensor, targets: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            batches.append(images.shape[0])
            return images, targets

    run = cnnspec.train(spec, out=tmp_path / "run", progress=False, callbacks=[Sizes()])
    assert batches == [32]
    assert json.loads((run / "result.json").read_text())["epochs"] == 1


@pytest.mark.parametrize("name", [n for n, facts in BACKBONES.items() if facts.batch_norm])
def test_the_deepest_batch_norm_map_of_each_backbone_is_torchvisions(name: str) -> None:
    """`BackboneFacts.deepest_map` against the smallest map any BatchNorm of the torchvision model sees."""
    import torchvision
    from torch import nn

    model = getattr(torchvision.models, name)(weights=None).eval()
    seen: list[tuple[int, int]] = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.register_forward_hook(lambda _m, _i, out: seen.append((out.shape[2], out.shape[3])))
    facts = BACKBONES[name]
    for h, w in ((32, 35), (33, 64)) if facts.min_size <= 32 else ((facts.min_size, 33), (45, 64)):
        seen.clear()
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w))
        assert min(seen, key=math.prod) == (facts.deepest_map(h), facts.deepest_map(w)), (name, h, w)
