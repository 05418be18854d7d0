"""The gate's own rules: the fp16 bound and the input shape the exported graph must declare."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnspec
from cnnspec.deploy.exporter import ExportReport
from cnnspec.deploy.gate import FP16_RELATIVE_BOUND, FP32_BOUND, bound_for, run_gate
from cnnspec.errors import ExportError

DIGITS = Path(__file__).resolve().parents[2] / "specs" / "digits.yaml"


def test_fp32_bound_is_absolute_whatever_the_logits() -> None:
    assert bound_for(False, np.array([[0.01, -300.0]])) == FP32_BOUND


def test_fp16_bound_grows_with_the_largest_logit() -> None:
    assert bound_for(True, np.array([[3.0, -50.0]])) == pytest.approx(FP16_RELATIVE_BOUND * 50.0)


def test_fp16_bound_never_falls_below_its_value_at_a_logit_of_one() -> None:
    # Tiny logits would otherwise leave a bound below fp16's own rounding of the weights.
    assert bound_for(True, np.array([[0.001, -0.002]])) == FP16_RELATIVE_BOUND
    assert bound_for(True, np.zeros((1, 3))) == FP16_RELATIVE_BOUND


def test_gate_refuses_a_graph_whose_input_is_not_the_metadata_image_size(digits_export: ExportReport) -> None:
    meta = digits_export.metadata
    c, h, w = meta.input_shape
    other = dataclasses.replace(meta, input_shape=[c, h + 1, w])
    with pytest.raises(ExportError) as caught:
        run_gate(digits_export.path, cnnspec.build(cnnspec.load(DIGITS)), other)
    assert f"the exported input has shape ['batch', {c}, {h}, {w}]; expected [N, {c}, {h + 1}, {w}]" in str(
        caught.value
    )


def test_gate_blames_the_run_not_the_exporter_when_outputs_are_not_finite(digits_export: ExportReport) -> None:
    """A normalisation that overflows float32 (std 1e-300), or NaN weights, fail the gate: the message
    says it is the run, not 'an exporter or runtime bug' (issue 14 O)."""
    meta = digits_export.metadata
    assert meta.preprocessing is not None
    tiny = dataclasses.replace(
        meta,
        mean=[0.5],
        std=[1e-300],
        preprocessing=dataclasses.replace(meta.preprocessing, mean=(0.5,), std=(1e-300,)),
    )
    model = cnnspec.build(cnnspec.load(DIGITS))
    with pytest.raises(ExportError) as caught, np.errstate(divide="ignore", invalid="ignore"):
        run_gate(digits_export.path, model, tiny)
    assert "the run's normalisation makes the model's input non-finite" in str(caught.value)
    assert "exporter" not in str(caught.value)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(ExportError) as caught:
        run_gate(digits_export.path, model, meta)
    assert "the model's own (torch) outputs are not finite" in str(caught.value)
    assert "exporter" not in str(caught.value)
