"""The layer list item: `- KIND: {PARAMS}` or a bare `- KIND`, one wrapper model per registered kind.

The wrapper for a kind is created (and its schema built) the first time a spec uses the
kind; see cnnspec.spec.dispatch for why.
"""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Any, ClassVar

from pydantic import Field, ValidationError, create_model

from cnnspec.layers import REGISTRY, LayerKind
from cnnspec.spec.base import StrictModel
from cnnspec.spec.dispatch import OneKeyItem


class LayerItemBase(StrictModel):
    """One entry of a layer list; `.layer` is the layer kind instance."""

    kind_name: ClassVar[str]

    @property
    def layer(self) -> LayerKind:
        return getattr(self, self.kind_name)  # type: ignore[no-any-return]


@functools.cache
def wrapper(kind: str) -> type[LayerItemBase]:
    """The one-field model `{KIND: LayerKindClass}` for a registered kind."""
    cls = REGISTRY[kind]
    model = create_model(  # type: ignore[call-overload]
        f"{cls.__name__}Layer",
        __base__=LayerItemBase,
        __doc__=cls.__doc__,
        __module__=__name__,
        **{kind: (cls, Field(description=(cls.__doc__ or kind).strip().splitlines()[0]))},
    )
    model.kind_name = kind
    globals()[model.__name__] = model  # found by name: pickle, copy and multiprocessing need that
    return model  # type: ignore[no-any-return]


LAYER_ITEM = OneKeyItem(
    wrapper=wrapper,
    names=lambda: REGISTRY,
    error_type="layer_kind",
    shape_message="a layer is `- KIND: {PARAMS}` or a bare `- KIND`",
    definition="LayerItem",
)

LayerItem = Annotated[LayerItemBase, LAYER_ITEM]

# The sugar kinds (residual, repeat, group) hold lists of layers, annotated with the name
# `LayerItem` that their module cannot import (it would import itself). Give their module
# the name, so pydantic resolves it when it builds their schema on first use.
for _cls in REGISTRY.values():
    if _cls.sugar:
        vars(sys.modules[_cls.__module__]).setdefault("LayerItem", LayerItem)


def _bare_ok(cls: type[LayerKind]) -> bool:
    if cls.many_inputs:
        return False
    try:
        cls.model_validate({})
    except ValidationError:
        return False
    return True


@functools.cache
def bare_kinds() -> list[str]:
    """Kinds that may be written bare (`- relu`): every parameter has a default."""
    return sorted(k for k, cls in REGISTRY.items() if _bare_ok(cls))


def __getattr__(name: str) -> Any:
    # Built on demand: creating every wrapper costs time `cnnspec validate` need not spend.
    if name == "WRAPPERS":
        return {kind: wrapper(kind) for kind in sorted(REGISTRY)}
    if name == "BARE_KINDS":
        return bare_kinds()
    for kind, cls in REGISTRY.items():  # a wrapper asked for by name (unpickling) before its first use
        if name == f"{cls.__name__}Layer":
            return wrapper(kind)
    raise AttributeError(name)
