"""Helpers for the export tests: untrained runs, test images and a torch reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from cnnspec.rundir.reader import load_trained
from cnnspec.rundir.untrained import init_run
from cnnspec.spec.load import load, loads

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"

# A small RGB model trained (on paper) with resizing and explicit normalisation.
RESIZED_NORMALISED = """
name: tiny-rgb
model:
  input: {channels: 3, height: 16, width: 16}
  layers:
    - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
    - batchnorm2d
    - relu
    - maxpool2d: {kernel_size: 2}
    - flatten
    - linear: {out_features: 5}
data:
  dataset: {name: image_folder, root: ./images}
  resize: [16, 16]
  normalize: {mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3]}
"""

TINY_GREY = """
name: tiny-grey
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    - relu
    - flatten
    - linear: {out_features: 3}
"""


def make_run(tmp_path_factory: pytest.TempPathFactory, name: str, spec_text: str | None = None, **kw: object) -> Path:
    """An untrained run directory of specs/NAME.yaml, or of `spec_text`."""
    folder = tmp_path_factory.mktemp(name)
    spec = loads(spec_text, file=f"<{name}>") if spec_text is not None else load(SPECS / f"{name}.yaml")
    return init_run(spec, folder / "run", **kw)  # type: ignore[arg-type]


def write_image(path: Path, size: tuple[int, int], mode: str, seed: int) -> Path:
    """A random image file of `size` (width, height) in Pillow `mode` ("L" or "RGB")."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def torch_logits(run: Path, x: np.ndarray) -> np.ndarray:
    """The run's torch model (safetensors weights, eval mode) on a (N, C, H, W) batch."""
    model = load_trained(run).model
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()  # type: ignore[no-any-return]


def rewrite_metadata(model_path: Path, out: Path, **values: object) -> Path:
    """A copy of `model_path` with metadata keys replaced by these JSON values."""
    model = onnx.load(str(model_path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({k: json.dumps(v) for k, v in values.items()})
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))
    return out
