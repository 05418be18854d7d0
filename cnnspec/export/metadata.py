"""The metadata an exported ONNX file carries about itself (no torch here).

Every value is stored JSON-encoded in the model's `metadata_props`, so any onnxruntime
user can read it with `json.loads(session.get_modelmeta().custom_metadata_map[KEY])`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cnnspec.errors import ExportError

if TYPE_CHECKING:
    import onnx

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
LAYOUT = "NCHW"
# Pixels are divided by this before mean/std are applied: the 0–1 scale of ToTensor().
PIXEL_SCALE = 255.0


@dataclass
class ModelMetadata:
    """What predict (or any user) needs to feed an exported model exactly as training did."""

    input_shape: list[int]  # [C, H, W] of one image
    class_names: list[str]
    layout: str = LAYOUT
    mean: list[float] | None = None  # per channel, on the 0–1 pixel scale; None: no normalisation
    std: list[float] | None = None
    pixel_scale: float = PIXEL_SCALE
    resize: list[int] | None = None  # [H, W] when training resized every image (data.resize)
    interpolation: str = "bilinear"
    color: str = "rgb"  # "grey" (1 channel) or "rgb" (3 channels)
    spec_name: str | None = None
    spec_hash: str | None = None
    architecture_hash: str | None = None
    cnnspec_version: str | None = None
    trained_with: str | None = None  # cnnspec version that trained the run
    dataset: str | None = None
    exporter: str | None = None  # "dynamo" or "torchscript"
    weights_dtype: str = "float32"
    dynamic_batch: bool = True
    opset: int | None = None
    spec: str | None = None  # the resolved spec, as YAML
    parity: dict[str, Any] | None = None  # the gate's figures
    extra: dict[str, str] = field(default_factory=dict)  # metadata_props cnnspec does not know

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    @property
    def height(self) -> int:
        return self.input_shape[1]

    @property
    def width(self) -> int:
        return self.input_shape[2]

    def props(self) -> dict[str, str]:
        """The metadata_props: every known field JSON-encoded, None fields left out."""
        data = asdict(self)
        data.pop("extra")
        out = {k: json.dumps(v) for k, v in data.items() if v is not None}
        out.update(self.extra)
        return out


KNOWN = frozenset(ModelMetadata.__dataclass_fields__) - {"extra"}


def color_of(channels: int) -> str:
    return "grey" if channels == 1 else "rgb"


def attach(model: onnx.ModelProto, meta: ModelMetadata) -> None:
    """Write `meta` into the model's metadata_props, replacing cnnspec's keys."""
    props = meta.props()
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in [*keep, *sorted(props.items())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def from_props(props: dict[str, str], where: str) -> ModelMetadata:
    """Decode metadata_props written by `attach`; ExportError when cnnspec's keys are damaged."""
    values: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, raw in props.items():
        if key not in KNOWN:
            extra[key] = raw
            continue
        try:
            values[key] = json.loads(raw)
        except ValueError:
            raise ExportError(f"{where}: metadata '{key}' is not JSON: {raw[:80]!r}") from None
    if "input_shape" not in values or "class_names" not in values:
        raise ExportError(
            f"{where} has no cnnspec metadata (input_shape, class_names)",
            hint="export it with `cnnspec export RUN`, or feed it with onnxruntime directly",
        )
    shape = values["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise ExportError(f"{where}: metadata input_shape must be [C, H, W], got {shape!r}")
    try:
        return ModelMetadata(**values, extra=extra)
    except TypeError as exc:
        raise ExportError(f"{where}: damaged cnnspec metadata: {exc}") from None


def read_props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}
