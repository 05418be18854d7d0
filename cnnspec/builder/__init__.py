"""Spec → torch.nn.Module."""

from __future__ import annotations

from cnnspec.builder.graph_module import SpecModule, build
from cnnspec.callable_package import make_callable

__all__ = ["SpecModule", "build"]

make_callable(__name__, build)
