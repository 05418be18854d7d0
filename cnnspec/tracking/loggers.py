"""The loggers a spec names (`train.loggers`), each guarded: a failure warns once and never stops training."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnspec.training.callbacks import Callback, Progress, TestEnd, TrainStart

if TYPE_CHECKING:
    from cnnspec.spec.model import Spec

# The logger → the module its library is (what `pip install 'cnnspec[track]'` brings).
LIBRARY = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
# How a run ends, as the trackers that record it say (MLflow's run statuses).
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"


class Logger(Callback):
    """A tracker's callback: the hooks it needs, and `end` to close what it holds when a run stops early."""

    def end(self, status: str) -> None:
        """Close the tracker's run or files; `status` is FINISHED, FAILED or KILLED."""


class Guarded(Callback):
    """A logger behind a guard: its first exception (a server down, a full disk, a broken library) becomes
    one warning line, and the logger is not called again; the training it observes goes on."""

    def __init__(self, name: str, logger: Logger | None, warn: Callable[[str], None]) -> None:
        self.name, self.logger, self.warn = name, logger, warn
        self.failed = False
        self.ended = False

    def _call(self, hook: str, *args: Any) -> None:
        if self.failed or self.logger is None:
            return
        try:
            getattr(self.logger, hook)(*args)
        except Exception as exc:  # any failure of the tracker: reported once, never raised into the loop
            self.failed = True
            self.warn(f"warning: {self.name} logging failed ({_describe(exc)}); training goes on without it")
            with contextlib.suppress(Exception):  # already reported: the first failure says why
                self.logger.end(FAILED)

    def on_train_start(self, start: TrainStart) -> None:
        self._call("on_train_start", start)

    def on_progress(self, progress: Progress) -> None:
        self._call("on_progress", progress)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self._call("on_epoch_end", record)

    def on_test_end(self, test: TestEnd) -> None:
        self._call("on_test_end", test)

    def on_train_end(self, result: dict[str, Any]) -> None:
        self._call("on_train_end", result)
        self.ended = True

    def end(self, status: str) -> None:
        """The run stopped early (`FAILED` on an error, `KILLED` on Ctrl-C): close what the logger holds."""
        if not self.ended:
            self.ended = True
            self._call("end", status)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:199] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def loggers_for(spec: Spec, run: Path, warn: Callable[[str], None]) -> list[Guarded]:
    """The guarded loggers `spec.train.loggers` names, for the run directory `run` (the main process only).

    A logger whose library is not installed is one line (`warn`) naming the extra, and is left out;
    one whose library is installed but fails to import (or to start) is one warning too.
    """
    made: list[Guarded] = []
    for name in spec.train.loggers:
        if not _installed(LIBRARY[name]):
            warn(
                f"warning: train.loggers names {name}, which is not installed: pip install 'cnnspec[track]'; "
                f"training without it"
            )
            continue
        guarded = Guarded(name, None, warn)
        try:
            guarded.logger = _make(name, spec, run)
        except Exception as exc:  # an installed but broken library: the import itself fails
            guarded.failed = True
            warn(f"warning: {name} logging failed ({_describe(exc)}); training goes on without it")
        made.append(guarded)
    return made


def end_all(loggers: Sequence[Guarded], status: str) -> None:
    for logger in loggers:
        logger.end(status)


def _make(name: str, spec: Spec, run: Path) -> Logger:
    if name == "tensorboard":
        from cnnspec.tracking.tensorboard_logger import TensorBoardLogger

        return TensorBoardLogger(spec, run)
    from cnnspec.tracking.mlflow_logger import MlflowLogger

    return MlflowLogger(spec, run)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a half-installed package: its import will say what is wrong
        return True
