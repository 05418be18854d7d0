"""`- NAME: {PARAMS}` list items, validated by the model registered under NAME.

Layers and augmentations are written as one-key mappings (or a bare `- NAME`). Each
name has a one-field wrapper model (`{conv2d: Conv2d}`); validation picks the wrapper
by the mapping's key, like a discriminated union, so pydantic reports only the chosen
kind's errors. Unlike a pydantic union, a wrapper's schema is built the first time a
spec uses that name: `cnnspec validate` pays only for the kinds a spec contains, which
keeps it fast (see docs/spec-language.md, "Errors" and benchmarks/validate_speed.py).

In the JSON Schema the item is a `$ref` to one shared definition that lists every
name (cnnspec.spec.schema fills it in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticCustomError, core_schema

from cnnspec.spec.base import StrictModel

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue


def normalise(value: Any) -> Any:
    """`- relu` and `- relu:` mean `- relu: {}`."""
    if isinstance(value, str):
        return {value: {}}
    if isinstance(value, dict) and len(value) == 1:
        ((key, params),) = value.items()
        if params is None:
            return {key: {}}
    return value


def item_name(value: Any) -> str | None:
    """The NAME of a `{NAME: ...}` item, or None when the value is not a one-key mapping."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    return None


class OneKeyItem:
    """Annotated metadata that validates a `{NAME: PARAMS}` item with NAME's wrapper model.

    `error_type` is the pydantic error type reported for an unknown name or a malformed
    item (cnnspec.spec.errors_map turns it into a message with a suggestion); its
    context carries `name` when the item named something.
    """

    def __init__(
        self,
        *,
        wrapper: Callable[[str], type[StrictModel]],
        names: Callable[[], Iterable[str]],
        error_type: str,
        shape_message: str,
        definition: str,
    ):
        self.wrapper = wrapper
        self.names = names
        self.error_type = error_type
        self.shape_message = shape_message
        self.definition = definition

    def validate(self, value: Any) -> StrictModel:
        if isinstance(value, StrictModel):  # already validated (re-validation of a built spec)
            return value
        value = normalise(value)
        name = item_name(value)
        if name is None:
            raise PydanticCustomError(self.error_type, self.shape_message)
        if name not in self.names():
            raise PydanticCustomError(self.error_type, "unknown name '{name}'", {"name": name})
        return self.wrapper(name).model_validate(value)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # No serialization schema: pydantic infers it from the wrapper instance at dump time.
        return core_schema.no_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"$ref": f"#/$defs/{self.definition}"}
