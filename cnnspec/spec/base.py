"""The base classes every spec section and layer kind derives from, and the number types they share."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A spec mapping: unknown keys are errors, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)
    # What the JSON Schema calls this mapping (its `title`, which editors show): its place in the spec
    # (`optimizer`, `train.unfreeze`). None: no title. A kind's is its name (cnnspec.spec.schema).
    SCHEMA_TITLE: ClassVar[str | None] = None


PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Size = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]

# Normalisation on the 0–1 pixel scale (data.normalize, run.json): a mean within ±1000, a standard
# deviation from 0.001 to 1000. Within them a normalised pixel, (x − mean) / std for x in [0, 1],
# stays within ±10⁶: finite in float32 (a std of 1e-300 made every input infinite, every output NaN).
# The statistics `normalize: auto` computes are inside (mean in [0, 1], std from 1/255 to 0.5: a
# flatter channel gets std 1), so only a hand-written value can be refused.
MAX_ABS_MEAN = 1e3
MIN_STD = 1e-3
MAX_STD = 1e3
NormMean = Annotated[float, Field(ge=-MAX_ABS_MEAN, le=MAX_ABS_MEAN, allow_inf_nan=False)]
NormStd = Annotated[float, Field(ge=MIN_STD, le=MAX_STD, allow_inf_nan=False)]
