"""`cnnspec graph -o FILE.png` where a PNG cannot be made: a drawing too large to rasterise, and a
Pillow that is installed but broken. Each ends with one located line and writes nothing."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cnnspec
from cnnspec.errors import CnnspecError
from cnnspec.render.graph_boxes import draw
from cnnspec.render.graph_png import MAX_PIXELS, png, scale_for
from cnnspec.review.graphview import view
from tests.cli_helpers import run_cli
from tests.review.review_helpers import ROOT, SPECS, cli_env

CHAIN = """\
name: long-chain
model:
  input: {{channels: 3, height: 8, width: 8}}
  layers:
    - repeat:
        n: {n}
        layers:
          - conv2d: {{out_channels: 4, kernel_size: 3, padding: 1}}
"""


def test_a_drawing_with_more_pixels_than_the_limit_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    spec = tmp_path / "chain.yaml"
    spec.write_text(CHAIN.format(n=4000))  # 4,000 boxes in a column: about 195 × 352,000 pixels
    out = tmp_path / "chain.png"
    result = run_cli("graph", str(spec), "-o", str(out))
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{out}: error: the graph is too large for PNG: ")
    assert f"more than the {MAX_PIXELS:,} a PNG is drawn with" in first
    assert "write .svg or .html" in result.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["chain.yaml"]


def test_the_scale_is_2_then_1_then_refused_as_the_pixels_grow() -> None:
    assert scale_for(100, 100, max_pixels=40_000) == 2.0  # 200 × 200 fits exactly
    assert scale_for(100, 101, max_pixels=40_000) == 1.0
    assert scale_for(200, 200, max_pixels=40_000) == 1.0
    with pytest.raises(CnnspecError, match="too large for PNG: 200 × 201 pixels"):
        scale_for(200, 201, max_pixels=40_000)


def test_png_refuses_before_drawing_anything_larger_than_its_limit() -> None:
    drawing = draw(view(cnnspec.check(cnnspec.load(SPECS / "small_cnn.yaml"))))
    pixels = math.ceil(drawing.layout.width * drawing.layout.height)
    assert png(drawing, max_pixels=pixels).startswith(b"\x89PNG")
    with pytest.raises(CnnspecError, match="too large for PNG"):
        png(drawing, max_pixels=pixels // 2)


def test_a_broken_pillow_install_is_one_line_that_says_how_to_reinstall(tmp_path: Path) -> None:
    import PIL

    # Pillow's Python files without its compiled modules: `import PIL` works, `PIL.Image` does not.
    broken = tmp_path / "site" / "PIL"
    broken.mkdir(parents=True)
    for source in Path(PIL.__path__[0]).glob("*.py"):
        shutil.copy(source, broken / source.name)
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(broken.parent), str(ROOT)])
    out = tmp_path / "small.png"
    command = [sys.executable, "-m", "cnnspec", "graph", str(SPECS / "small_cnn.yaml"), "-o", str(out)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("error: cnnspec graph -o FILE.png needs Pillow, which is installed but broken: ")
    assert "_imaging" in lines[0]
    assert f"hint: reinstall it: {sys.executable} -m pip install --force-reinstall --no-deps pillow" in proc.stderr
    assert not out.exists()
