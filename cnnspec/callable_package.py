"""Packages that are also the function they are named after (`cnnspec.build`, `train`, `export`).

`cnnspec.build(spec)` is documented API, and `cnnspec/builder/` is a package. Importing any
`cnnspec.build.*` module binds the attribute `cnnspec.build` to the package, hiding the
function that `cnnspec/__init__.py` imports lazily. Making the package callable keeps
`cnnspec.build(spec)` working whichever of the two the name resolves to.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(package: str, function: Callable[..., Any]) -> None:
    """Let calling the package `package` call `function`."""

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

    CallablePackage.__doc__ = function.__doc__
    sys.modules[package].__class__ = CallablePackage
