"""The layer list item: a discriminated union built from the layer-kind registry.

In YAML a layer is `- KIND: {PARAMS}` or a bare `- KIND`. Each registered kind gets a
one-field wrapper model named after it, and a callable discriminator picks the
wrapper by the mapping's single key, so pydantic reports only that kind's errors.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, create_model

from cnnspec.layers import REGISTRY, LayerKind
from cnnspec.spec.base import StrictModel


class LayerItemBase(StrictModel):
    """One entry of a layer list; `.layer` is the layer kind instance."""

    kind_name: ClassVar[str]

    @property
    def layer(self) -> LayerKind:
        return getattr(self, self.kind_name)  # type: ignore[no-any-return]


def _normalise(value: Any) -> Any:
    """`- relu` and `- relu:` mean `- relu: {}`."""
    if isinstance(value, str):
        return {value: {}}
    if isinstance(value, dict) and len(value) == 1:
        ((key, params),) = value.items()
        if params is None:
            return {key: {}}
    return value


def _tag(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    if isinstance(value, StrictModel):  # a wrapper being serialised: its one field is the tag
        return next(iter(type(value).model_fields))
    return None


def _wrapper(kind: str, cls: type[LayerKind]) -> type[LayerItemBase]:
    wrapper = create_model(  # type: ignore[call-overload]
        f"{cls.__name__}Layer",
        __base__=LayerItemBase,
        __doc__=cls.__doc__,
        **{kind: (cls, Field(description=(cls.__doc__ or kind).strip().splitlines()[0]))},
    )
    wrapper.kind_name = kind
    return wrapper  # type: ignore[no-any-return]


WRAPPERS: dict[str, type[LayerItemBase]] = {kind: _wrapper(kind, cls) for kind, cls in sorted(REGISTRY.items())}

LayerItem = Annotated[
    Union[tuple(Annotated[w, Tag(k)] for k, w in WRAPPERS.items())],  # type: ignore[valid-type]  # noqa: UP007
    Discriminator(
        _tag,
        custom_error_type="layer_kind",
        custom_error_message="a layer is `- KIND: {PARAMS}` or a bare `- KIND`",
    ),
    BeforeValidator(_normalise),
]

for _cls in REGISTRY.values():
    if _cls.sugar:
        _cls.model_rebuild(_types_namespace={"LayerItem": LayerItem})
for _w in WRAPPERS.values():
    _w.model_rebuild(_types_namespace={"LayerItem": LayerItem})

def _bare_ok(cls: type[LayerKind]) -> bool:
    if cls.many_inputs:
        return False
    try:
        cls.model_validate({})
    except ValueError:
        return False
    return True


BARE_KINDS = sorted(k for k, cls in REGISTRY.items() if _bare_ok(cls))
