"""The export gate: the ONNX file must be valid and compute what the torch model computes.

1. `onnx.checker.check_model(full_check=True)` (structure, types, shape inference);
2. the graph's input is `input` of shape (N, C, H, W) and its output `logits`;
3. onnxruntime (CPU provider) and torch (CPU, eval mode) run the same batches of 1 and 7
   random 8-bit images, brought to the input by the preprocessing the file records (the steps
   predict takes); the largest absolute difference of the logits must stay within the bound:
   1e-4 for fp32 weights, and for fp16 weights 1e-2 · max(1, max |torch logits|)
   (fp16 keeps 11 significant bits, so rounding the weights alone moves logits by a few
   parts in a thousand of their size).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from cnnspec.deploy.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from cnnspec.deploy.session import open_session
from cnnspec.errors import Diagnostic, ExportError, Location

BATCHES = (1, 7)
FP32_BOUND = 1e-4
FP16_RELATIVE_BOUND = 1e-2


@dataclass
class Parity:
    batch: int
    max_abs_diff: float
    max_abs_logit: float
    bound: float

    @property
    def ok(self) -> bool:
        # NaN compares False, so a non-finite output fails.
        return bool(self.max_abs_diff <= self.bound)

    def to_json(self) -> dict[str, float | int]:
        return {
            "batch": self.batch,
            "max_abs_diff": self.max_abs_diff,
            "max_abs_logit": self.max_abs_logit,
            "bound": self.bound,
        }


def sample_batch(meta: ModelMetadata, batch: int, seed: int = 0) -> np.ndarray:
    """Random 8-bit images of the size training stored, brought to the model's input by the model's
    own preprocessing (the steps predict takes): (N, C, H, W) float32."""
    preprocessing = meta.image_preprocessing()
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, preprocessing.channels, *preprocessing.image_size), dtype=np.uint8)
    return preprocessing.prepare(images)


def bound_for(fp16: bool, torch_logits: np.ndarray) -> float:
    if not fp16:
        return FP32_BOUND
    return FP16_RELATIVE_BOUND * max(1.0, float(np.abs(torch_logits).max()))


def _check_structure(path: Path, meta: ModelMetadata) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported file fails onnx.checker: {str(exc).splitlines()[0]}") from None
    model = onnx.load(str(path), load_external_data=False)
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(
            f"the exported graph has inputs {inputs} and outputs {outputs}; expected {[INPUT_NAME]} and {[OUTPUT_NAME]}"
        )
    dims = model.graph.input[0].type.tensor_type.shape.dim
    got = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    if len(got) != 4 or got[1:] != meta.input_shape:
        raise ExportError(f"the exported input has shape {got}; expected [N, {', '.join(map(str, meta.input_shape))}]")


def run_gate(
    path: str | Path, model: nn.Module, meta: ModelMetadata, fp16: bool = False, where: str | None = None
) -> list[Parity]:
    """Check the ONNX file at `path` against `model`; ExportError with the figures when it fails.

    `where` names the file in messages (the gate runs on a temporary file beside it).
    """
    p = Path(path)
    _check_structure(p, meta)
    session = open_session(p, device="cpu")
    model.eval()
    results: list[Parity] = []
    for batch in BATCHES:
        x = sample_batch(meta, batch, seed=batch)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).float().numpy()
        _refuse_non_finite(x, expected, meta, where or str(p))
        if session.static_batch is None:
            got = session.run(x)
        else:  # a fixed batch axis: feed the images one batch at a time
            step = session.static_batch
            got = np.concatenate([session.run(x[i : i + step]) for i in range(0, batch, step)])
        if got.shape != expected.shape:
            raise ExportError(
                f"onnxruntime returns logits of shape {list(got.shape)} at batch {batch}, torch {list(expected.shape)}"
            )
        diff = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())
        results.append(Parity(batch, diff, float(np.abs(expected).max()), bound_for(fp16, expected)))
    failed = [r for r in results if not r.ok]
    if failed:
        kind = "fp16 weights" if fp16 else "fp32"
        notes = tuple(
            f"batch {r.batch}: max |onnxruntime − torch| = {r.max_abs_diff:.3g} "
            f"(bound {r.bound:.3g}, largest logit {r.max_abs_logit:.3g})"
            for r in results
        )
        overflow = fp16 and any(not np.isfinite(r.max_abs_diff) for r in failed)
        raise ExportError(
            Diagnostic(
                f"parity gate failed: onnxruntime and torch disagree beyond the {kind} bound",
                Location(where or str(p)),
                notes=notes,
                hint="no ONNX file was written; "
                + (
                    "onnxruntime's outputs are not finite with fp16 weights (a weight or value beyond fp16's"
                    " ±65504): export without export.fp16"
                    if overflow
                    else "report this with the spec, it is an exporter or runtime bug"
                ),
            )
        )
    return results


def _refuse_non_finite(x: np.ndarray, expected: np.ndarray, meta: ModelMetadata, where: str) -> None:
    """ExportError when the torch model's own input or outputs are not finite: no engine can match
    NaN, and the cause is the run (its normalisation, or its weights), not the exporter."""
    if not np.isfinite(x).all():
        raise ExportError(
            Diagnostic(
                "the run's normalisation makes the model's input non-finite (NaN or inf) on 8-bit images",
                Location(where),
                notes=(f"mean {meta.mean}, std {meta.std}",),
                hint="no ONNX file was written; the run's run.json mean/std are not ones `cnnspec train` writes:"
                " put back the original, or train the run again",
            )
        )
    if not np.isfinite(expected).all():
        raise ExportError(
            Diagnostic(
                "the model's own (torch) outputs are not finite (NaN or inf) on 8-bit images:"
                " there is nothing for onnxruntime to match",
                Location(where),
                notes=(f"mean {meta.mean}, std {meta.std}",),
                hint="no ONNX file was written; the run's weights or its normalisation make the outputs"
                " non-finite: evaluate the run (`cnnspec evaluate RUN`), or train it again",
            )
        )
