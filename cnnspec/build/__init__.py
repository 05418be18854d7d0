"""Spec → torch.nn.Module."""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from cnnspec.build.graph_module import SpecModule, build

if TYPE_CHECKING:
    from cnnspec.check.graph import Graph
    from cnnspec.spec.model import Spec

__all__ = ["SpecModule", "build"]


class _CallableModule(types.ModuleType):
    """This package, callable as `cnnspec.build(spec)`.

    Importing any `cnnspec.build.*` module binds the attribute `cnnspec.build` to this
    package, shadowing the lazily imported `build` function; being callable keeps the
    documented `cnnspec.build(spec)` working whichever of the two the name resolves to.
    """

    def __call__(self, spec_or_graph: Spec | Graph) -> SpecModule:
        return build(spec_or_graph)


sys.modules[__name__].__class__ = _CallableModule
