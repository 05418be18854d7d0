"""Spec → torch.nn.Module."""

from cnnspec.build.graph_module import SpecModule, build

__all__ = ["SpecModule", "build"]
