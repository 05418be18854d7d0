"""train.channels_last: true with a plugin layer whose code needs the default layout (`x.view`): one
error line that names the setting, before the run directory is written (cnnspec/training/setup.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS = '''
from typing import ClassVar
from cnnspec.layers import LayerKind, Window, register

@register
class ViewFlat(LayerKind):
    """Flattens with x.view(n, -1): needs the default (contiguous) layout."""
    kind: ClassVar[str] = "viewflat"

    def output_shape(self, inputs):
        c, h, w = self.image(inputs)
        return (c * h * w,)

    def tensors(self, inputs):
        return {}

    def params(self, inputs):
        return 0

    def macs(self, inputs, output):
        return 0

    def window(self, inputs, output):
        return Window()

    def build(self, inputs):
        import torch

        class ViewFlatModule(torch.nn.Module):
            def forward(self, x):
                return x.view(x.shape[0], -1)

        return ViewFlatModule()
'''

SPEC = """\
name: digits-view
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    - relu
    - viewflat
    - linear: {out_features: 10}
data:
  dataset: {name: digits}
  batch_size: 128
  val_split: 0
optimizer: {name: adamw, lr: 5.0e-3}
train: {epochs: 1, seed: 0, channels_last: true}
"""


def test_channels_last_true_with_a_plugin_that_needs_the_default_layout_is_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "viewplug").mkdir(parents=True)
    (site / "viewplug" / "__init__.py").write_text("")
    (site / "viewplug" / "layers.py").write_text(textwrap.dedent(LAYERS))
    info = site / "viewplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: viewplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cnnspec.layers]\nviewplug = viewplug.layers\n")
    spec = tmp_path / "digits_view.yaml"
    spec.write_text(SPEC)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "cnnspec", "train", str(spec), "--out", str(run)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr  # the real console script: a traceback would be printed here
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0].startswith(f"{spec}:14:")  # train.channels_last's own line
    assert "error: the model fails in the channels-last memory format: view size is not compatible" in lines[0]
    assert any("set train.channels_last: auto" in line for line in lines[1:])
    assert not run.exists()  # refused before the run directory is written
    # auto (the default) trains the same plugin in the default layout.
    spec.write_text(SPEC.replace(", channels_last: true", ""))
    done = subprocess.run(
        [sys.executable, "-m", "cnnspec", "train", str(spec), "--out", str(run), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (run / "result.json").is_file()
