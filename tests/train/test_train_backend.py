"""cnnspec draws its PNGs without switching matplotlib's backend: a notebook keeps its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.reliability._reliability_helpers import TINY

SCRIPT = """
import sys
import matplotlib
matplotlib.use("svg")
import cnnspec
from cnnspec.checker.summary import summarize
from cnnspec.render.summary import plot
from cnnspec.training.api import evaluate_run

run = cnnspec.train(sys.argv[1], out=sys.argv[2], progress=False)   # curves.png
evaluate_run(run)                                                      # confusion_matrix.png
plot(summarize(cnnspec.check(cnnspec.load(sys.argv[1]))), sys.argv[2] + "/rf.png")
print("BACKEND", matplotlib.get_backend())
"""


def test_training_and_plots_leave_the_callers_matplotlib_backend(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.replace("num_samples: 64", "num_samples: 96").replace("val_split: 0", "val_split: 0.25"))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(spec), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "BACKEND svg" in proc.stdout.splitlines()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for png in ("rf.png", "confusion_matrix.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
