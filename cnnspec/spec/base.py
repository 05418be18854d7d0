"""The base classes every spec section and layer kind derives from, and the number types they share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A spec mapping: unknown keys are errors, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Size = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
