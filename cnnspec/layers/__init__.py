"""Every layer kind, registered on import."""

from cnnspec.layers import backbone, conv, dense, elementwise, pool, reshape, sugar  # noqa: F401
from cnnspec.layers.base import REGISTRY, LayerKind, Shape, ShapeProblem, Window, register

__all__ = ["REGISTRY", "LayerKind", "Shape", "ShapeProblem", "Window", "register"]
