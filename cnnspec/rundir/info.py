"""run.json: `RunInfo`, what a trained model needs beside its weights, and the spec hashes it records."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, PositiveInt, ValidationError, field_validator, model_validator

from cnnspec.errors import CheckpointError, Diagnostic, Location
from cnnspec.rundir.files import write_run_file
from cnnspec.rundir.paths import RunPaths
from cnnspec.spec.base import NormMean, NormStd, StrictModel
from cnnspec.version import __version__

if TYPE_CHECKING:
    from cnnspec.spec.model import Spec


class RunInfo(StrictModel):
    """What a trained model needs beside its weights (stored as RUN/run.json).

    Every reader (evaluate, export, bench, --resume, the run-folder test of a fresh train) goes
    through these rules, so a hand-edited record is refused naming its field, never trusted.
    """

    spec_name: str
    spec_hash: str = Field(description="sha256 of the whole resolved spec.")
    architecture_hash: str = Field(description="sha256 of model: only; resuming needs it unchanged.")
    cnnspec_version: str
    input_shape: list[PositiveInt] = Field(min_length=3, max_length=3, description="[C, H, W] of one image.")
    class_names: list[str] = Field(min_length=1)
    # The spec's own bounds (cnnspec.spec.base: finite, |mean| ≤ 1000, std from 0.001 to 1000): evaluate,
    # export and predict divide by the std, and a tiny or huge one would turn every prediction into NaN.
    mean: list[NormMean] | None = Field(
        None, description="Per channel, on the 0–1 scale, within ±1000; None: no normalisation."
    )
    std: list[NormStd] | None = Field(None, description="Per channel, 0.001 to 1000; None exactly when mean is None.")
    dataset: str | None = None
    run_id: str | None = Field(
        None,
        description="Made when the run starts and kept by every resume; its training state carries the same "
        "(None: a run written before cnnspec recorded one).",
    )

    @field_validator("class_names")
    @classmethod
    def _distinct_names(cls, names: list[str]) -> list[str]:
        # An ONNX model answers with a class name: an empty one, or two alike, would be an answer
        # nobody can act on (which of the two "cat"s?).
        if any(not n for n in names):
            raise ValueError("an empty class name: every class needs a name")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"class names must differ; {', '.join(map(repr, twice[:3]))} appears more than once")
        return names

    @model_validator(mode="after")
    def _one_value_per_channel(self) -> RunInfo:
        if (self.mean is None) != (self.std is None):
            given, missing = ("mean", "std") if self.std is None else ("std", "mean")
            raise ValueError(f"{given} is given but {missing} is not: normalisation needs both, or neither")
        channels = self.input_shape[0]
        for key, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) != channels:
                raise ValueError(
                    f"{key} has {len(values)} value{'s' if len(values) != 1 else ''} but input_shape has "
                    f"{channels} channel{'s' if channels != 1 else ''}: one value per channel"
                )
        return self

    @classmethod
    def for_spec(
        cls,
        spec: Spec,
        *,
        input_shape: Sequence[int],
        class_names: list[str],
        mean: list[float] | None = None,
        std: list[float] | None = None,
        run_id: str | None = None,
    ) -> RunInfo:
        """The record of a run of `spec`: the one place a RunInfo is made (train and `init_run`).

        `run_id`: the run's own when it is resumed; a new run gets a new one."""
        return cls(
            spec_name=spec.name,
            spec_hash=spec_hash(spec),
            architecture_hash=architecture_hash(spec),
            cnnspec_version=__version__,
            input_shape=list(input_shape),
            class_names=class_names,
            mean=mean,
            std=std,
            dataset=spec.data.dataset.name if spec.data is not None else None,
            run_id=run_id if run_id is not None else uuid.uuid4().hex,
        )


def is_run(root: Path) -> bool:
    """Whether `root` holds a cnnspec run: a run.json that parses as cnnspec's own record."""
    info = RunPaths(root).info
    try:
        if not info.is_file():  # a FIFO there would block the read
            return False
        RunInfo.model_validate_json(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _damaged_info(path: Path, exc: ValidationError) -> CheckpointError:
    """A run.json that breaks RunInfo's rules: one located line per problem, naming the field."""
    where = Location(str(path))
    diagnostics = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        if error["type"] == "json_invalid":
            message = f"not valid JSON ({message.removeprefix('Invalid JSON: ')})"
        elif field:
            shown = json.dumps(error["input"]) if _json_able(error["input"]) else repr(error["input"])
            message = f"{field}: {message[:1].lower()}{message[1:]}, got {shown[:80]}"
        else:
            message = f"{message[:1].lower()}{message[1:]}"  # the whole record (a list, a mean without std)
        diagnostics.append(Diagnostic(message, where))
    return CheckpointError(
        diagnostics,
        hint="run.json is the record `cnnspec train` wrote; put back the original, or train the run again",
    )


def _json_able(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def spec_hash(spec: Spec) -> str:
    return hashlib.sha256(_canonical(spec.model_dump(mode="json"))).hexdigest()


def architecture_hash(spec: Spec) -> str:
    """sha256 of `model:` with its expressions' values, plus the vars when there are any: the layers
    of a block read vars at each use, so the same `model:` text is another network at another width.

    Values equal to their defaults are left out, so a later cnnspec that adds an optional field
    (with a default that keeps today's behaviour) still resumes today's runs; `model.weights` is
    left out because it names where the first weights came from, not what the network is.
    """
    model = spec.model.model_dump(mode="json", exclude_defaults=True, exclude={"weights"})
    return hashlib.sha256(_canonical({"model": model, "vars": spec.vars} if spec.vars else model)).hexdigest()


def read_info(run: str | Path) -> RunInfo:
    paths = RunPaths(Path(run))
    if not paths.info.is_file():
        raise CheckpointError(
            f"{run} is not a cnnspec run directory (no run.json)", hint="pass the folder `cnnspec train --out` wrote"
        )
    try:
        text = paths.info.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {paths.info}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return RunInfo.model_validate_json(text)
    except ValidationError as exc:
        raise _damaged_info(paths.info, exc) from None


def legacy_architecture_hash(spec: Spec) -> str:
    """The architecture hash as cnnspec wrote it before values at their defaults were left out
    (every value of `model:`, `model.weights` included): run.json files of older runs hold it."""
    model = spec.model.model_dump(mode="json")
    return hashlib.sha256(_canonical({"model": model, "vars": spec.vars} if spec.vars else model)).hexdigest()


def write_info(paths: RunPaths, info: RunInfo) -> None:
    """Write run.json atomically, as the run's own file; a failed write is a CheckpointError naming it."""
    write_run_file(paths.root, paths.info, json.dumps(info.model_dump(mode="json"), indent=2) + "\n")


SERVING_KEY = "cnnspec.serving"  # the weights files' metadata key of `serving_digest`
RUN_ID_KEY = "cnnspec.run_id"  # the weights files' metadata key of the run's RunInfo.run_id


def serving_digest(preprocessing: dict[str, Any], class_names: Sequence[str]) -> str:
    """sha256 of what turns the weights' outputs into answers: the preprocessing (cnnspec.preprocess's
    `Preprocessing.to_json`, normalisation included) and the class names. Training stores it with every
    weights file, so a run.json or spec.yaml edited after training is noticed, not believed."""
    canonical = json.dumps({"preprocessing": preprocessing, "class_names": list(class_names)}, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
