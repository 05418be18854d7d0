"""Every layer kind, registered on import."""

from cnnspec.layers import backbone, conv, dense, elementwise, pool, reshape, sugar  # noqa: F401
from cnnspec.layers.base import (
    LAYER_KINDS,
    REGISTRY,
    LayerItem,
    LayerItemBase,
    LayerKind,
    Shape,
    ShapeProblem,
    Window,
    register,
)
from cnnspec.layers.plugins import load_plugins

load_plugins()  # after the built-in kinds, so a plugin cannot take a built-in name

__all__ = [
    "LAYER_KINDS",
    "REGISTRY",
    "LayerItem",
    "LayerItemBase",
    "LayerKind",
    "Shape",
    "ShapeProblem",
    "Window",
    "register",
]
