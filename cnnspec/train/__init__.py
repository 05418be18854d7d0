"""Training: data, batched augmentation, the loop, checkpoints and resume (imports torch)."""

from __future__ import annotations

import sys
import types
from typing import Any

from cnnspec.train.api import evaluate_run, train

__all__ = ["evaluate_run", "train"]


class _CallableModule(types.ModuleType):
    """`cnnspec.train(...)` must stay the function even after `import cnnspec.train.x` has bound the
    attribute `cnnspec.train` to this package: calling the package calls `train`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
