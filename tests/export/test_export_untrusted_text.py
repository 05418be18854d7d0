"""Names from an ONNX file or a data set someone sent, in text output (issue 14, item 12).

Class names, spec names and file names are printed with control characters escaped
(`cnnspec.terminal.printable`) and never read as rich markup; JSON output keeps them exact.
The ONNX files are real exports whose metadata is rewritten with the onnx library.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnspec.deploy.exporter import ExportReport
from cnnspec.rundir.untrained import init_run
from cnnspec.spec.load import loads
from cnnspec.terminal import printable
from tests.cli_helpers import run_cli
from tests.export._export_helpers import rewrite_metadata, write_image

HOSTILE = [
    "\x1b]0;owned\x07title",  # OSC: set the window title
    "\x1b[2J\x1b[Hclear",  # clear the screen, cursor home
    "forged\nimg.png: 9 (1.000)",  # a forged output line
    "[bold red]x[/]",  # rich markup
    "[link=https://example.invalid]y[/link]",
    "\u202eevil",  # right-to-left override
    "\x9b31mred",  # C1 CSI
    "back\rspace",
    "tab\there",
    "plain",
]
# Characters no text output may contain after escaping (besides the line breaks it writes itself).
CONTROL = [chr(c) for c in range(0x20) if chr(c) != "\n"] + [chr(0x7F), "\x9b", "\u202e"]


@pytest.fixture
def hostile_model(digits_export: ExportReport, tmp_path: Path) -> Path:
    # digits: 10 classes, 1×8×8. The file sits outside its run, so bench rebuilds the embedded spec.
    return rewrite_metadata(
        digits_export.path, tmp_path / "sent.onnx", class_names=HOSTILE, spec_name=HOSTILE[0] + HOSTILE[3]
    )


def _clean(text: str) -> None:
    for ch in CONTROL:
        assert ch not in text, f"{ch!r} reached the terminal: {text!r}"


def test_printable_escapes_controls_and_keeps_ordinary_text() -> None:
    assert printable("\x1b[2Jx") == "\\x1b[2Jx"
    assert printable("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert printable("\u202eevil\x9b\x7f") == "\\u202eevil\\x9b\\x7f"
    assert printable("chat, 猫, café [x]") == "chat, 猫, café [x]"


def test_predict_text_escapes_class_and_file_names(hostile_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    png = write_image(folder / "a\x1b[31m\nb.png", (8, 8), "L", seed=1)
    # The real console script: what a terminal would receive, byte for byte.
    proc = subprocess.run(
        [sys.executable, "-m", "cnnspec", "predict", str(hostile_model), str(png), "-k", "10", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    _clean(proc.stdout + proc.stderr)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, lines  # one image, one line: no forged line
    assert lines[0].startswith(printable(str(png)) + ": ")
    for name in HOSTILE:
        assert printable(name) in lines[0]
    assert "[bold red]x[/]" in lines[0] and "[link=https://example.invalid]y[/link]" in lines[0]


def test_predict_json_keeps_the_names_exact(hostile_model: Path, tmp_path: Path) -> None:
    png = write_image(tmp_path / "a.png", (8, 8), "L", seed=1)
    result = run_cli("predict", str(hostile_model), str(png), "-k", "10", "--format", "json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    _clean(result.stdout.replace("\n", ""))  # json.dumps escapes control characters itself
    names = {s["class"] for s in json.loads(result.stdout)["predictions"][0]["top"]}
    assert names == set(HOSTILE)


def test_bench_table_escapes_the_spec_name_and_shows_markup_literally(hostile_model: Path) -> None:
    result = run_cli("bench", str(hostile_model), "--batch", "1", "--seconds", "0", "--device", "cpu")
    assert result.exit_code == 0, result.output
    _clean(result.stdout + result.stderr)
    title = result.stdout.splitlines()[0]
    assert title.startswith(printable(HOSTILE[0]) + "[bold red]x[/] on CPU"), title


EVAL_SPEC = """
name: evil
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    - relu
    - flatten
    - linear: {out_features: 3}
data:
  dataset: {name: image_folder, root: ROOT}
  resize: [8, 8]
  batch_size: 4
  num_workers: 0
  normalize: none
"""
FOLDERS = ["\x1b[2Jcleared", "[reverse]x", "new\nline"]  # no "/" in a folder name


def test_evaluate_table_escapes_class_folder_names(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for split in ("train", "test"):
        for i, name in enumerate(sorted(FOLDERS)):
            (data / split / name).mkdir(parents=True)
            pixels = np.full((8, 8), 40 * i, dtype=np.uint8)
            Image.fromarray(pixels).save(data / split / name / "0.png")
    spec = loads(EVAL_SPEC.replace("ROOT", str(data)), file="<evil>")
    run = init_run(spec, tmp_path / "run", class_names=sorted(FOLDERS))
    result = run_cli("evaluate", str(run))
    assert result.exit_code == 0, result.output
    _clean(result.stdout + result.stderr)
    for name in FOLDERS:
        assert printable(name) in result.stdout  # "[reverse]x" literally, not a reversed "x"
