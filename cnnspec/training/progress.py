"""Progress output: a rich bar per epoch on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from cnnspec.training.callbacks import Callback, Progress, TrainStart


def _fmt_epoch(m: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {m['epoch']}/{epochs}", f"loss {m['train_loss']:.4f}", f"acc {m['train_accuracy']:.4f}"]
    if m.get("val_loss") is not None:
        parts += [f"val_loss {m['val_loss']:.4f}", f"val_acc {m['val_accuracy']:.4f}"]
    parts += [f"lr {m['lr']:.3g}", f"{m['images_per_second']:.0f} img/s", f"{m['seconds']:.1f}s"]
    if m.get("skipped_steps"):
        parts.append(f"skipped {m['skipped_steps']}")
    return "  ".join(parts)


class Reporter:
    """Silent; the base of the others. Subclass it to receive progress from `cnnspec.train(progress=...)`."""

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        """A new epoch of `steps` batches starts (`done` of them already ran before a resume)."""

    def update(self, step: int, loss: float, accuracy: float, images_per_second: float) -> None:
        """`step` batches of this epoch are done."""

    def end_epoch(self, metrics: dict[str, Any], epochs: int) -> None:
        """The epoch's record is complete."""

    def message(self, text: str) -> None:
        """A one-line note (resume, early stop, best checkpoint)."""

    def close(self) -> None:
        """Stop drawing."""


class PlainReporter(Reporter):
    """One line per epoch: for logs, CI and pipes."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr

    def end_epoch(self, metrics: dict[str, Any], epochs: int) -> None:
        print(_fmt_epoch(metrics, epochs), file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class RichReporter(Reporter):
    """A rich progress bar per epoch (loss, accuracy, images/s, ETA), then the epoch's line."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.4f}  {task.fields[ips]:.0f} img/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        if self.task is None:
            self.progress.start()
        else:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            f"epoch {epoch}/{epochs}", total=steps, completed=done, loss=0.0, acc=0.0, ips=0.0
        )

    def update(self, step: int, loss: float, accuracy: float, images_per_second: float) -> None:
        self.progress.update(self.task, completed=step, loss=loss, acc=accuracy, ips=images_per_second)

    def end_epoch(self, metrics: dict[str, Any], epochs: int) -> None:
        self.progress.console.print(_fmt_epoch(metrics, epochs), markup=False)

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False)

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()
            self.task = None


class ReporterCallback(Callback):
    """The progress display as a callback: forwards the loop's hooks to a Reporter."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.epochs = 0
        self.steps = 0

    def on_train_start(self, start: TrainStart) -> None:
        self.epochs, self.steps = start.epochs, start.steps_per_epoch

    def on_epoch_start(self, epoch: int, done: int) -> None:
        self.reporter.start_epoch(epoch, self.epochs, self.steps, done)

    def on_progress(self, progress: Progress) -> None:
        self.reporter.update(progress.step, progress.loss, progress.accuracy, progress.images_per_second)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.reporter.end_epoch(record, self.epochs)


def make_reporter(progress: bool | Reporter | None) -> Reporter:
    """`None`: a bar on a terminal, plain lines otherwise; `False`: silent; `True`: plain lines;
    a Reporter instance: that one (e.g. to send progress to your own logger)."""
    if isinstance(progress, Reporter):
        return progress
    if progress is False:
        return Reporter()
    if progress is None and sys.stderr.isatty():
        return RichReporter()
    return PlainReporter()
