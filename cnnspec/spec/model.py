"""The spec: pydantic models for every top-level section (no torch here)."""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cnnspec.augments import AugmentItem
from cnnspec.datasets import DATASETS, names_description
from cnnspec.layers import LayerItem
from cnnspec.spec.base import Fraction, NormMean, NormStd, PositiveInt, Size, StrictModel
from cnnspec.spec.source import SourceMap

# --- model ----------------------------------------------------------------------------

# The files `model.weights` may name: the spec's rule, so validate, build, train and `--set` all apply it.
WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")
# The error type (see errors_map) of a rule whose message is said as written, with ctx["hint"].
SPEC_RULE = "spec_rule"


class InputSpec(StrictModel):
    """Shape of one input image."""

    SCHEMA_TITLE = "model.input"

    channels: PositiveInt = Field(description="Image channels: 3 for RGB, 1 for grey.")
    height: PositiveInt = Field(description="Image height in pixels.")
    width: PositiveInt = Field(description="Image width in pixels.")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


class BlockSpec(StrictModel):
    """A reusable, parameterised list of layers; use it with `- block: {name: NAME, args: {...}}`."""

    SCHEMA_TITLE = "model.blocks.NAME"

    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameter names with default values (null = required). Layers refer to them as '$NAME'.",
    )
    layers: list[Any] = Field(
        description="The block's layers, checked after its parameters are filled in.", min_length=1
    )


class ModelSpec(StrictModel):
    """The network: an input shape and a list of layers."""

    SCHEMA_TITLE = "model"

    input: InputSpec = Field(description="Shape of one input image (C×H×W).")
    blocks: dict[str, BlockSpec] = Field(default_factory=dict, description="Named reusable blocks.")
    layers: list[LayerItem] = Field(
        description="The layers, in order; each reads the previous one unless it names `inputs`.", min_length=1
    )
    weights: str | None = Field(
        None,
        description="A state_dict file (.pth/.pt, read with torch.load(weights_only=True), or .safetensors) that "
        "cnnspec.build loads strictly: its keys and shapes must equal the model's (e.g. torchvision's pretrained "
        "weights, the ids chosen to match). A relative path is relative to the spec file's folder.",
        min_length=1,
    )

    @field_validator("weights")
    @classmethod
    def _weights_suffix(cls, value: str | None) -> str | None:
        if value is not None and not PurePath(value).name.endswith(WEIGHT_SUFFIXES):
            raise PydanticCustomError(
                SPEC_RULE,
                "model.weights must be a .pth, .pt or .safetensors file, got {value}",
                {
                    "value": repr(value),
                    "hint": "save the state_dict with torch.save(model.state_dict(), 'FILE.pth') or safetensors",
                },
            )
        return value


# --- data -----------------------------------------------------------------------------


# `data.dataset.name` accepts exactly the datasets registered by now (the JSON Schema's enum).
if TYPE_CHECKING:
    DatasetName = str
else:
    DatasetName = Literal[tuple(DATASETS)]


class DatasetSpec(StrictModel):
    """Which images to train on."""

    SCHEMA_TITLE = "data.dataset"

    name: DatasetName = Field(description=names_description())  # the registered datasets (cnnspec.datasets)
    root: str = Field(
        "./data",
        description="Folder the dataset lives in (or is downloaded to); a relative path is relative to the spec "
        "file's folder.",
    )
    download: bool = Field(True, description="Download a torchvision dataset when it is not in root.")
    num_samples: PositiveInt = Field(2048, description="synthetic only: number of training images.")
    num_classes: PositiveInt = Field(10, description="synthetic only: number of classes.")


class Normalize(StrictModel):
    """Per-channel mean and standard deviation, on the 0–1 pixel scale."""

    SCHEMA_TITLE = "data.normalize"

    mean: list[NormMean] = Field(description="Per-channel mean.", min_length=1)
    std: list[NormStd] = Field(description="Per-channel standard deviation.", min_length=1)


class DataSpec(StrictModel):
    """Where the images come from and how they are augmented."""

    SCHEMA_TITLE = "data"

    dataset: DatasetSpec = Field(description="The dataset.")
    batch_size: PositiveInt = Field(128, description="Images per optimizer step, per process.")
    eval_batch_size: PositiveInt | None = Field(None, description="Images per evaluation batch; default 2×batch_size.")
    val_split: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.1,
        description="Fraction of the training set held out for validation when the dataset has no validation split.",
    )
    normalize: Literal["auto", "none"] | Normalize = Field(
        "auto", description="'auto' (mean/std computed once from the training set), 'none', or {mean, std}."
    )
    resize: Size | None = Field(
        None,
        description="Resize every image to this size first (train and test); image_folder: by default the "
        "model input's height and width.",
    )
    augment: list[AugmentItem] = Field(default_factory=list, description="Training augmentations, applied in order.")
    num_workers: Annotated[int, Field(ge=0)] = Field(
        2, description="image_folder only: DataLoader worker processes (when the folder is streamed)."
    )
    cache: Literal["auto", "memory", "none"] = Field(
        "auto",
        description="image_folder only: memory (decode every image once, keep each split as one uint8 tensor on "
        "the training device), none (decode every batch from disk, every epoch), or auto (memory when the "
        "decoded splits take at most a quarter of the free memory, else none; the train log says which).",
    )
    cache_dir: Annotated[str, Field(min_length=1)] = Field(
        "auto",
        description="image_folder held in memory: where the decoded arrays are kept between runs, so a second "
        "run decodes nothing: auto (the user cache folder: $CNNSPEC_CACHE_DIR, else "
        "$XDG_CACHE_HOME/cnnspec/decoded, else ~/.cache/cnnspec/decoded), none (no disk cache), or a folder "
        "(relative to the spec's folder).",
    )


# --- optimisation ---------------------------------------------------------------------


class OptimizerSpec(StrictModel):
    """The optimizer."""

    SCHEMA_TITLE = "optimizer"

    name: Literal["sgd", "adam", "adamw"] = Field("sgd", description="sgd, adam or adamw.")
    lr: Annotated[float, Field(gt=0)] = Field(0.1, description="Learning rate (peak, after warm-up).")
    momentum: Fraction = Field(0.9, description="sgd only: momentum.")
    nesterov: bool = Field(False, description="sgd only: Nesterov momentum.")
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] = Field(
        [0.9, 0.999], description="adam/adamw: coefficients of the running averages."
    )
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="L2 penalty (decoupled for adamw).")
    decay_norms_and_biases: bool = Field(
        True, description="Apply weight decay to normalisation weights and biases too."
    )


# Warm-up longer than the run warms up the whole run (it is cut at train.epochs); past this it is a typo.
MAX_WARMUP_EPOCHS = 10_000


class ScheduleSpec(StrictModel):
    """The learning-rate schedule, updated every optimizer step."""

    SCHEMA_TITLE = "schedule"

    name: Literal["constant", "cosine", "step", "multistep", "onecycle"] = Field(
        "constant", description="constant, cosine (to min_lr), step, multistep or onecycle."
    )
    warmup_epochs: Annotated[float, Field(ge=0, le=MAX_WARMUP_EPOCHS)] = Field(
        0.0, description="Linear warm-up from 0 before the schedule, in epochs."
    )
    min_lr: Annotated[float, Field(ge=0)] = Field(0.0, description="cosine: final learning rate.")
    step_size: PositiveInt = Field(30, description="step: epochs between decays.")
    milestones: list[PositiveInt] = Field(default_factory=list, description="multistep: epochs at which to decay.")
    gamma: Annotated[float, Field(gt=0, le=1)] = Field(0.1, description="step/multistep: decay factor.")
    pct_start: Annotated[float, Field(gt=0, lt=1)] = Field(0.3, description="onecycle: fraction of steps spent rising.")
    extend: Literal["continue", "restart"] = Field(
        "continue",
        description="When a resume changes train.epochs: continue (the learning rate goes on from where it was "
        "to the schedule's end value at the new end) or restart (a new cycle of the schedule over the steps left).",
    )


class EarlyStopping(StrictModel):
    """Stop when a validation metric stops improving."""

    SCHEMA_TITLE = "train.early_stopping"

    metric: Literal["val_accuracy", "val_loss"] = Field("val_loss", description="Metric to watch.")
    patience: PositiveInt = Field(5, description="Epochs without improvement before stopping.")
    min_delta: Annotated[float, Field(ge=0)] = Field(0.0, description="Smallest change that counts as improvement.")


class Unfreeze(StrictModel):
    """Unfreeze frozen backbone layers later in training, with a smaller learning rate."""

    SCHEMA_TITLE = "train.unfreeze"

    epoch: PositiveInt = Field(description="Epoch (1-based) from which the backbone trains.")
    lr_scale: Annotated[float, Field(gt=0, le=1)] = Field(0.1, description="Backbone learning rate = lr × lr_scale.")


class MlflowSettings(StrictModel):
    """Where the mlflow logger writes (train.loggers: [mlflow])."""

    SCHEMA_TITLE = "train.mlflow"

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI (http://host:5000, sqlite:///path.db, …); unset: MLFLOW_TRACKING_URI, "
        "else an SQLite store mlflow.db beside the run directory (docs/tracking.md).",
        min_length=1,
    )
    experiment: str | None = Field(None, description="MLflow experiment name; unset: the spec's name.", min_length=1)


# The experiment trackers a run can log to (cnnspec/tracking/: one module each).
LoggerName = Literal["tensorboard", "mlflow"]


class EmaSpec(StrictModel):
    """An exponential moving average of the weights (train.ema)."""

    SCHEMA_TITLE = "train.ema"

    decay: Annotated[float, Field(gt=0, lt=1)] = Field(
        ..., description="EMA decay per update: ema = decay·ema + (1−decay)·weights (e.g. 0.99)."
    )
    every: PositiveInt = Field(1, description="Update the average every this many optimizer steps.")


class TrainSpec(StrictModel):
    """How to train."""

    SCHEMA_TITLE = "train"

    epochs: PositiveInt = Field(10, description="Number of passes over the training set.")
    amp: Literal["auto", "fp16", "bf16", "off"] = Field(
        "auto", description="Mixed precision: auto (fp16 on CUDA, off on CPU), fp16, bf16 or off."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when present.")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(
        0, description="Random seed for weights, shuffling and augmentation (0 to 2³²−1, numpy's range)."
    )
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = Field(0.0, description="Cross-entropy label smoothing.")
    grad_clip: Annotated[float, Field(gt=0)] | None = Field(None, description="Clip the gradient norm to this value.")
    channels_last: Literal["auto"] | bool = Field(
        "auto",
        description="Train in the channels-last memory format (faster convs): auto uses it on a CPU, and on "
        "CUDA under AMP, for models of built-in layers only (a plugin layer may assume the default layout).",
    )
    compile: bool = Field(False, description="torch.compile the model.")
    early_stopping: EarlyStopping | None = Field(None, description="Stop when validation stops improving.")
    ema: EmaSpec | None = Field(
        None,
        description="Keep an exponential moving average of the weights (BatchNorm statistics too); "
        "validation, the best epoch, the test and export use the averaged weights.",
    )
    freeze_bn_weight: bool = Field(
        False, description="Keep every BatchNorm weight (gamma) at its initial value; biases still train."
    )
    unfreeze: Unfreeze | None = Field(None, description="Unfreeze a frozen torchvision backbone at an epoch.")
    sync_batchnorm: bool = Field(
        False, description="Distributed runs: synchronise batchnorm statistics across processes."
    )
    loggers: list[LoggerName] = Field(
        default_factory=list,
        description="Experiment trackers to log to: tensorboard (RUN/tensorboard/), mlflow (train.mlflow); "
        "rank 0 alone logs.",
    )
    log_every_steps: PositiveInt = Field(
        50, description="tensorboard: log the running training figures every this many optimizer steps."
    )
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings, description="mlflow logger settings.")

    @field_validator("loggers")
    @classmethod
    def _each_logger_once(cls, loggers: list[str]) -> list[str]:
        twice = sorted({name for name in loggers if loggers.count(name) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} is named more than once: name each logger once")
        return loggers


TtaView = Literal["flip", "translate"]


class EvaluateSpec(StrictModel):
    """How `cnnspec evaluate` and the end-of-training test evaluate (not validation, not export)."""

    SCHEMA_TITLE = "evaluate"

    tta: list[TtaView] = Field(
        default_factory=list,
        description="Test-time augmentation: average the logits over the image and its transformed views: "
        "flip (horizontal mirror), translate (shifted by ±translate_pixels on both axes, reflect-padded); "
        "both: every combination (6 views). The ONNX export stays one forward pass.",
    )
    translate_pixels: Annotated[int, Field(ge=1, le=8)] = Field(
        2, description="tta translate: the shift in pixels (airbench uses 2 at 32×32)."
    )

    @field_validator("tta")
    @classmethod
    def _each_view_once(cls, tta: list[str]) -> list[str]:
        if len(set(tta)) < len(tta):
            raise ValueError("a test-time augmentation is named more than once: name each once")
        return tta


class ExportSpec(StrictModel):
    """How to export to ONNX."""

    SCHEMA_TITLE = "export"

    opset: Annotated[int, Field(ge=13, le=23)] = Field(18, description="ONNX opset version.")
    dynamic_batch: bool = Field(True, description="Let the batch axis vary.")
    fp16: bool = Field(False, description="Store weights in fp16 (half the size; looser parity bound).")


Bounds = Annotated[list[float], Field(min_length=2, max_length=2)]


class SearchRange(StrictModel):
    """Where one spec path's values come from: exactly one of the four keys."""

    # `int` is a Python name, so the field is int_: dumped under the key a spec writes, so a dump reads back
    model_config = ConfigDict(**StrictModel.model_config, serialize_by_alias=True)

    log_uniform: Bounds | None = Field(None, description="[LOW, HIGH], 0 < LOW < HIGH: a float drawn log-uniformly.")
    uniform: Bounds | None = Field(None, description="[LOW, HIGH], LOW < HIGH: a float drawn uniformly.")
    int_: Annotated[list[int], Field(min_length=2, max_length=2)] | None = Field(
        None, alias="int", description="[LOW, HIGH], LOW < HIGH: an integer, both bounds included."
    )
    choice: list[int | float | str | bool] | None = Field(
        None, min_length=1, description="One of these values (numbers, strings, booleans)."
    )

    @model_validator(mode="after")
    def _one_sane_range(self) -> SearchRange:
        given = [k for k in ("log_uniform", "uniform", "int_", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "range", "a search range is one of log_uniform, uniform, int or choice, got {n}", {"n": len(given)}
            )
        bounds = self.log_uniform or self.uniform or self.int_
        if bounds is not None:
            low, high = bounds
            if not low < high:
                raise PydanticCustomError(
                    "range", "the range needs LOW < HIGH, got [{low}, {high}]", {"low": low, "high": high}
                )
            if self.log_uniform is not None and low <= 0:
                raise PydanticCustomError("range", "log_uniform needs 0 < LOW, got {low}", {"low": low})
        return self

    def kind(self) -> str:
        """The key that was given: log_uniform, uniform, int or choice."""
        return next(
            k
            for k in ("log_uniform", "uniform", "int", "choice")
            if getattr(self, k.replace("int", "int_") if k == "int" else k) is not None
        )


class SweepSpec(StrictModel):
    """`cnnspec sweep`: an Optuna study over spec paths; `cnnspec train` ignores this section."""

    SCHEMA_TITLE = "sweep"

    objective: Literal["val_accuracy", "val_loss"] = Field(
        "val_accuracy", description="What a trial is scored by: val_accuracy (maximised) or val_loss (minimised)."
    )
    trials: PositiveInt = Field(20, description="Number of finished trials (completed or pruned) the study runs to.")
    pruner: Literal["median", "successive_halving", "none"] = Field(
        "median", description="Stops weak trials after an epoch: median, successive_halving, or none."
    )
    space: dict[str, SearchRange] = Field(
        min_length=1,
        description="Dotted spec path (as for --set: optimizer.lr, vars.width, model.layers.3.conv2d.kernel_size) "
        "→ {log_uniform: [LOW, HIGH]}, {uniform: [LOW, HIGH]}, {int: [LOW, HIGH]} or {choice: [A, B, ...]}.",
    )


class Spec(StrictModel):
    """A cnnspec model spec."""

    name: str = Field(description="Name of the model.", min_length=1, max_length=200)
    description: str | None = Field(None, description="What this spec is for.")
    vars: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], int | float] = Field(
        default_factory=dict,
        description="Spec-level variables (name → number, or an expression of the vars above it), used as "
        "$NAME or ${EXPRESSION} wherever a number goes; override with --set vars.NAME=VALUE.",
    )
    model: ModelSpec = Field(description="The network.")
    data: DataSpec | None = Field(None, description="The data; required for training.")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec, description="The optimizer.")
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec, description="The learning-rate schedule.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Training settings.")
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec, description="Evaluation settings (the test).")
    export: ExportSpec = Field(default_factory=ExportSpec, description="ONNX export settings.")
    sweep: SweepSpec | None = Field(None, description="A hyperparameter and architecture search (`cnnspec sweep`).")

    _source: SourceMap | None = PrivateAttr(None)
    # The data as written (overrides applied), before expressions were replaced by their values,
    # and which strings were replaced: re-applying --set (e.g. vars.width) starts from it.
    _written: Any = PrivateAttr(None)
    _evaluated: dict[Any, Any] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> SourceMap:
        return self._source or SourceMap("<spec>")
