"""benchmarks/gpu_check.sh runs before a GPU is lent: `--dry` (CPU, tiny sizes) for real, its figures checked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("smallcnn", "resnet18")


@pytest.mark.slow
def test_gpu_check_dry_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        # One intra-op thread, as the other training tests' children run: the dry sizes gain nothing from
        # a second one, and under `pytest -n 2` two threads per child spin against the other worker.
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=tmp_path,  # the script finds the tree from its own path, not the working folder
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads((out / "gpu_check.json").read_text())
    assert figures["dry"] is True and figures["device_name"]
    assert figures["pytest_gpu"]["exit_code"] == 0 and "skipped" in figures["pytest_gpu"]["summary"]
    for model in MODELS:
        for precision in ("fp32", "bf16"):
            for layout in ("nchw", "channels_last"):
                for mode in ("eager", "compile"):
                    assert figures["matrix"][f"{model} {precision} {layout} {mode}"] > 0
    assert figures["matrix"]["smallcnn fp16 nchw eager"] > 0
    assert figures["hand_loop_images_per_second"] > 0 and figures["cnnspec_train_images_per_second"] > 0
    assert figures["cnnspec_vs_hand_ratio"] > 0
    assert figures["speed_spec_epochs_per_second"] > 0  # specs/cifar10_speed.yaml on synthetic data
    assert not figures["skipped"]  # the dry run fits its budget: every measurement ran
    assert (out / "gpu_check.txt").read_text().startswith("gpu_check on ")
