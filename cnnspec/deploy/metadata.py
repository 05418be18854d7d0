"""The metadata an exported ONNX file carries about itself (no torch here).

Every value is stored JSON-encoded in the model's `metadata_props`, so any onnxruntime
user can read it with `json.loads(session.get_modelmeta().custom_metadata_map[KEY])`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cnnspec.errors import ExportError
from cnnspec.preprocess import FITS, PADDING_MODES, PIXEL_SCALE, Preprocessing

if TYPE_CHECKING:
    import onnx

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
LAYOUT = "NCHW"

# What a file's metadata may ask for (docs/reliability.md, "Models from elsewhere"): checked
# before anything is allocated, since predict allocates images of input_shape (resizing to
# it) and bench random batches of it and a torch model of the embedded spec.
MAX_CHANNELS = 64
MAX_SIDE = 8192  # pixels, for H, W and resize
MAX_IMAGE_ELEMENTS = 3 * 4096 * 4096  # C·H·W of one image: 192 MiB as float32
MAX_CLASSES = 100_000
MAX_CLASS_NAME = 1024  # characters
MAX_SPEC_CHARS = 1_000_000
# Bounds on a value before it is parsed: its length (JSON text; the YAML of a spec of MAX_SPEC_CHARS is at
# most 6 times longer escaped) and its nesting (cnnspec's own values nest 3 deep; Python's JSON reader
# recurses once a level and ends in RecursionError near 1000).
MAX_VALUE_CHARS = 16 * 2**20
MAX_DEPTH = 16
WEIGHTS_DTYPES = ("float32", "float16", "int8")  # int8: a QDQ file written by `cnnspec quantize`


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
    run_id: str | None = None  # the run's own id (run.json run_id): which run, not only which spec
    dataset: str | None = None
    exporter: str | None = None  # "dynamo" or "torchscript"
    weights_dtype: str = "float32"
    dynamic_batch: bool = True
    opset: int | None = None
    spec: str | None = None  # the resolved spec, as YAML
    parity: dict[str, Any] | None = None  # the gate's figures
    quantization: dict[str, Any] | None = None  # an INT8 file's settings and figures (cnnspec quantize)
    # Every step from an image file to the input (cnnspec.preprocess); None in files exported before
    # it was recorded, whose steps `image_preprocessing` derives from the keys above where it can.
    preprocessing: Preprocessing | None = None
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

    def image_preprocessing(self, where: str = "the model") -> Preprocessing:
        """How to turn an image into this model's input: the recorded steps, checked against the
        keys that repeat them (input_shape, mean, std, resize, pixel_scale); for a file exported
        before they were recorded, the steps its keys imply. ExportError when they disagree, or
        when an older file cannot say (it resized to another size than the input: crop or squash?)."""
        pre = self.preprocessing
        if pre is None:
            return self._legacy_preprocessing(where)
        repeated = (
            ("input_shape", [pre.channels, *pre.input_size], self.input_shape),
            ("mean", list(pre.mean) if pre.mean is not None else None, self.mean),
            ("std", list(pre.std) if pre.std is not None else None, self.std),
            ("resize", list(pre.image_size) if pre.resize else None, self.resize),
            ("pixel_scale", PIXEL_SCALE, self.pixel_scale),
        )
        for key, recorded, given in repeated:
            if recorded != given:
                raise ExportError(
                    f"{where}: metadata 'preprocessing' says {key} {json.dumps(recorded)} but '{key}' is"
                    f" {json.dumps(given)}",
                    hint="the file's metadata was changed after `cnnspec export`: export the run again",
                )
        return pre

    def _legacy_preprocessing(self, where: str) -> Preprocessing:
        c, h, w = self.input_shape
        if self.pixel_scale != PIXEL_SCALE:
            raise ExportError(
                f"{where}: metadata 'pixel_scale' {self.pixel_scale:g} without 'preprocessing'; cnnspec feeds"
                f" 8-bit images divided by {PIXEL_SCALE:g}",
                hint="export the run again with this cnnspec",
            )
        if self.resize is not None and self.resize != [h, w]:
            raise ExportError(
                f"{where} was exported by cnnspec {self.cnnspec_version or '(unknown version)'} without"
                f" 'preprocessing': it says training resized images to {self.resize[1]}×{self.resize[0]} but not"
                f" how they became the model's {w}×{h} input (a centre crop or a resize)",
                hint="export the run again with this cnnspec (`cnnspec export RUN`): it records every step",
            )
        return Preprocessing(
            channels=c,
            image_size=(h, w),
            resize=self.resize is not None,
            fit="center_crop",
            input_size=(h, w),
            mean=tuple(self.mean) if self.mean is not None else None,
            std=tuple(self.std) if self.std is not None else None,
        )

    def props(self) -> dict[str, str]:
        """The metadata_props: every known field JSON-encoded, None fields left out."""
        data = asdict(self)
        data.pop("extra")
        data["preprocessing"] = self.preprocessing.to_json() if self.preprocessing is not None else None
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
        values[key] = _parse(key, raw, where)
    if "input_shape" not in values or "class_names" not in values:
        raise ExportError(
            f"{where} has no cnnspec metadata (input_shape, class_names)",
            hint="export it with `cnnspec export RUN`, or feed it with onnxruntime directly",
        )
    _check_values(values, where)
    if values.get("preprocessing") is not None:
        values["preprocessing"] = Preprocessing.from_json(values["preprocessing"])
    try:
        return ModelMetadata(**values, extra=extra)
    except TypeError as exc:
        raise ExportError(f"{where}: damaged cnnspec metadata: {exc}") from None


def _parse(key: str, raw: str, where: str) -> Any:
    """One JSON-encoded metadata value, within MAX_VALUE_CHARS and MAX_DEPTH; ExportError otherwise."""
    hint = "the file was not written by `cnnspec export`, or its metadata was changed"
    if len(raw) > MAX_VALUE_CHARS:
        raise ExportError(
            f"{where}: metadata '{key}' is {len(raw):,} characters long; at most {MAX_VALUE_CHARS:,} are read",
            hint=hint,
        )
    try:
        value = json.loads(raw)
        too_deep = _deeper_than(value, MAX_DEPTH)
    except RecursionError:  # json's decoder recurses once a level
        too_deep = True
    except ValueError:
        raise ExportError(f"{where}: metadata '{key}' is not JSON: {raw[:80]!r}") from None
    if too_deep:
        raise ExportError(f"{where}: metadata '{key}' nests lists or objects deeper than {MAX_DEPTH} levels", hint=hint)
    return value


def _deeper_than(value: object, limit: int) -> bool:
    """Whether lists and dicts nest more than `limit` levels in `value` (iteratively: no recursion)."""
    level: list[tuple[object, int]] = [(value, 0)]
    while level:
        item, depth = level.pop()
        if isinstance(item, list | dict):
            if depth >= limit:
                return True
            level.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _check_values(values: dict[str, Any], where: str) -> None:
    """Types, lengths and bounds of cnnspec's keys; ExportError naming the key, what it holds and what it may."""

    def bad(key: str, expected: str) -> ExportError:
        shown = json.dumps(values[key])
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return ExportError(
            f"{where}: metadata '{key}' must be {expected}, got {shown}",
            hint="the file was not written by `cnnspec export`, or its metadata was changed",
        )

    shape = values["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)):
        raise ExportError(f"{where}: metadata input_shape must be [C, H, W], got {shape!r}")
    c, h, w = shape
    if c > MAX_CHANNELS or h > MAX_SIDE or w > MAX_SIDE or c * h * w > MAX_IMAGE_ELEMENTS:
        raise bad(
            "input_shape",
            f"at most {MAX_CHANNELS} channels, {MAX_SIDE} pixels a side and "
            f"{MAX_IMAGE_ELEMENTS:,} values an image (C·H·W = {c * h * w:,})",
        )
    names = values["class_names"]
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise bad("class_names", "a list of strings")
    if not 1 <= len(names) <= MAX_CLASSES:
        raise bad("class_names", f"1 to {MAX_CLASSES:,} names (it has {len(names):,})")
    if any(len(n) > MAX_CLASS_NAME for n in names):
        raise bad("class_names", f"names of at most {MAX_CLASS_NAME} characters")
    if not all(names) or len(set(names)) != len(names):  # an answer must name one class, unambiguously
        raise bad("class_names", "distinct, non-empty names")
    for key in ("mean", "std"):
        v = values.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == c and all(_is_number(x) for x in v)):
            raise bad(key, f"null or a list of {c} finite numbers, one per input channel")
    if values.get("std") is not None and any(x <= 0 for x in values["std"]):
        raise bad("std", "positive numbers")
    if (values.get("mean") is None) != (values.get("std") is None):
        raise ExportError(f"{where}: metadata has one of mean and std without the other")
    scale = values.get("pixel_scale", PIXEL_SCALE)
    if not (_is_number(scale) and scale > 0):
        raise bad("pixel_scale", "a positive finite number")
    resize = values.get("resize")
    if resize is not None and not (
        isinstance(resize, list) and len(resize) == 2 and all(_is_int(v) and 0 < v <= MAX_SIDE for v in resize)
    ):
        raise bad("resize", f"null or [H, W] with sides from 1 to {MAX_SIDE}")
    for key, allowed in (("layout", (LAYOUT,)), ("interpolation", ("bilinear",)), ("color", ("grey", "rgb"))):
        if key in values and values[key] not in allowed:
            raise bad(key, " or ".join(json.dumps(a) for a in allowed))
    for key in ("spec_name", "spec_hash", "architecture_hash", "cnnspec_version", "trained_with", "dataset", "run_id"):
        if values.get(key) is not None and not (isinstance(values[key], str) and len(values[key]) <= MAX_CLASS_NAME):
            raise bad(key, f"null or a string of at most {MAX_CLASS_NAME} characters")
    spec = values.get("spec")
    if spec is not None and not (isinstance(spec, str) and len(spec) <= MAX_SPEC_CHARS):
        raise bad("spec", f"null or YAML text of at most {MAX_SPEC_CHARS:,} characters")
    if "dynamic_batch" in values and not isinstance(values["dynamic_batch"], bool):
        raise bad("dynamic_batch", "true or false")
    if values.get("opset") is not None and not _is_int(values["opset"]):
        raise bad("opset", "null or an integer")
    if "weights_dtype" in values and values["weights_dtype"] not in WEIGHTS_DTYPES:
        raise bad("weights_dtype", " or ".join(json.dumps(d) for d in WEIGHTS_DTYPES))
    for key in ("parity", "quantization"):
        if values.get(key) is not None and not isinstance(values[key], dict):
            raise bad(key, "null or an object")
    if values.get("exporter") is not None and not isinstance(values["exporter"], str):
        raise bad("exporter", "null or a string")
    if values.get("preprocessing") is not None:
        _check_preprocessing(values["preprocessing"], bad)


# The keys of metadata 'preprocessing' (cnnspec.preprocess.Preprocessing.to_json). An unknown key
# is refused: it would be a step this cnnspec does not know and would silently leave out.
PREPROCESSING_KEYS = ("channels", "image_size", "resize", "fit", "input_size", "padding_mode", "scale", "mean", "std")


def _check_preprocessing(pre: object, bad: Any) -> None:
    """Types and bounds of metadata 'preprocessing' (its agreement with the other keys is checked
    where it is used, `ModelMetadata.image_preprocessing`, after the graph is checked against them)."""

    def side_pair(v: object) -> bool:
        return isinstance(v, list) and len(v) == 2 and all(_is_int(x) and 0 < x <= MAX_SIDE for x in v)

    def numbers(v: object, count: int) -> bool:
        return isinstance(v, list) and len(v) == count and all(_is_number(x) for x in v)

    expected = (
        "an object with "
        + ", ".join(PREPROCESSING_KEYS)
        + f": channels 1 to {MAX_CHANNELS}, image_size and input_size [H, W] (1 to {MAX_SIDE} a side,"
        f" at most {MAX_IMAGE_ELEMENTS:,} values an image), resize true or false, fit"
        f" {' or '.join(FITS)}, padding_mode {' or '.join(PADDING_MODES)}, scale {PIXEL_SCALE:g},"
        " mean and std null or one finite number per channel (std positive)"
    )
    if not isinstance(pre, dict) or sorted(pre) != sorted(PREPROCESSING_KEYS):
        raise bad("preprocessing", expected)
    c = pre["channels"]
    ok = _is_int(c) and 0 < c <= MAX_CHANNELS
    ok = ok and side_pair(pre["image_size"]) and side_pair(pre["input_size"])
    ok = ok and all(c * v[0] * v[1] <= MAX_IMAGE_ELEMENTS for v in (pre["image_size"], pre["input_size"]))
    ok = ok and isinstance(pre["resize"], bool) and pre["fit"] in FITS and pre["padding_mode"] in PADDING_MODES
    ok = ok and _is_number(pre["scale"]) and pre["scale"] == PIXEL_SCALE
    mean, std = pre["mean"], pre["std"]
    ok = ok and (mean is None) == (std is None)
    ok = ok and (mean is None or (numbers(mean, c) and numbers(std, c) and all(x > 0 for x in std)))
    if not ok:
        raise bad("preprocessing", expected)


def read_props(model: onnx.ModelProto, where: str) -> dict[str, str]:
    """The model's metadata_props as a dict; ExportError when a key appears twice (which value is meant
    cannot be known: a reader that takes the last, as a dict does, and one that takes the first disagree)."""
    props: dict[str, str] = {}
    for entry in model.metadata_props:
        if entry.key in props:
            raise ExportError(
                f"{where}: metadata key {json.dumps(entry.key)[:80]} appears more than once",
                hint="the file was not written by `cnnspec export`, or its metadata was changed",
            )
        props[entry.key] = entry.value
    return props


def ensure_exported_from(meta: ModelMetadata, where: str, run: str, spec_hash: str, run_id: str | None) -> None:
    """ExportError, naming both, when the model at `where` (the run's model.onnx) is not an export of the run
    `run` whose run.json records `spec_hash` and `run_id`: another spec's export, or another run's (when both
    record a run id; files exported before it was recorded are matched by spec alone). A command that takes a
    RUN and uses RUN/model.onnx must not measure another network under the run's name."""
    hint = f"export the run again: cnnspec export {run}"
    if meta.spec_hash != spec_hash:
        raise ExportError(
            f"{where} is not an export of the run {run}: its metadata spec_hash is {meta.spec_hash or '(none)'},"
            f" the run's run.json spec_hash is {spec_hash}",
            hint=hint,
        )
    if meta.run_id is not None and run_id is not None and meta.run_id != run_id:
        raise ExportError(
            f"{where} is not an export of the run {run}: its metadata run_id is {meta.run_id}, the run's run.json"
            f" run_id is {run_id} (another run of the same spec)",
            hint=hint,
        )
