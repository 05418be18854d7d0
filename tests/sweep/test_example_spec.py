"""specs/digits_sweep.yaml, docs/experiments.md's worked example: every draw of its space is checked as documented."""

from __future__ import annotations

import itertools
from pathlib import Path

from cnnspec.spec.load import load
from cnnspec.sweep.space import candidate

SPEC = Path(__file__).resolve().parents[2] / "specs" / "digits_sweep.yaml"


def test_the_worked_example_space_has_an_impossible_kernel_and_nothing_else_impossible() -> None:
    spec = load(SPEC)
    assert spec.sweep is not None and spec.sweep.trials == 12 and spec.sweep.pruner == "median"
    space = spec.sweep.space
    assert set(space) == {"optimizer.lr", "vars.width", "model.layers.3.conv2d.kernel_size"}
    widths, kernels = space["vars.width"].choice, space["model.layers.3.conv2d.kernel_size"].choice
    assert widths is not None and kernels is not None
    for width, kernel in itertools.product(widths, kernels):
        values = {"optimizer.lr": 1.0e-3, "vars.width": width, "model.layers.3.conv2d.kernel_size": kernel}
        found = candidate(spec, values)
        if kernel == 11:  # 11 > conv1's 8×8 output padded to 10×10
            assert found.spec is None and found.error is not None
            assert "smaller than the kernel" in found.error and "digits_sweep.yaml:14:" in found.error
        else:
            assert found.spec is not None, found.error
            conv1 = found.spec.model.layers[0]
            assert conv1.conv2d.out_channels == round(32 * float(width) / 8) * 8  # type: ignore[attr-defined]
