"""TensorBoard: event files in RUN/tensorboard/, written with torch.utils.tensorboard.SummaryWriter.

Every scalar is at the optimizer step (the x axis TensorBoard shows): `step/*` (the epoch's running
training loss and accuracy, the learning rate, images/s) every `train.log_every_steps` steps,
`epoch/*` (each number of the epoch's metrics.jsonl record) at the epoch's last step, `test/*` at the
end. Images: `test/confusion_matrix` and `curves` (curves.png). The hyperparameters (the resolved spec,
flattened) with the final figures are in the HParams tab.

RUN/tensorboard is the run's own folder, as its other files are (cnnspec/rundir/files.py): a symbolic
link there (or a file, a FIFO) is refused when the logger is made and again before the writer opens, so
no event is written outside the run; the refusal is the guard's one warning, and the run trains on.

A fresh run purges what an earlier run in the same folder logged (a purge at step 0); a resume
purges what was logged after its checkpoint, so TensorBoard shows one unbroken run.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnspec.rundir.files import own_path
from cnnspec.tracking.loggers import Logger
from cnnspec.tracking.params import hyperparameters, scalar

if TYPE_CHECKING:
    from cnnspec.spec.model import Spec
    from cnnspec.training.callbacks import Progress, TestEnd, TrainStart

FOLDER = "tensorboard"


class TensorBoardLogger(Logger):
    """A Logger (a Callback): the tensorboard logger's hooks (called through `cnnspec.tracking.loggers.Guarded`)."""

    def __init__(self, spec: Spec, run: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # fails here when tensorboard is broken

        self._writer_class = SummaryWriter
        self.spec = spec
        self.run = run
        self.folder = run / FOLDER
        own_path(run, self.folder, folder=True)  # a link out of the run: refused before training starts
        self.every = spec.train.log_every_steps
        self.writer: Any = None
        self.optimizer: Any = None
        self.steps_per_epoch = 1
        self.last_logged = 0
        self.last_step = 0

    def on_train_start(self, start: TrainStart) -> None:
        self.optimizer, self.steps_per_epoch = start.optimizer, start.steps_per_epoch
        self.last_logged = self.last_step = start.step
        # A fresh run purges every earlier event (step 0 on); a resume those after its checkpoint.
        purge = start.step + 1 if start.step else 0
        own_path(self.run, self.folder, folder=True)  # again at the moment the writer makes its files
        self.writer = self._writer_class(log_dir=str(self.folder), purge_step=purge)

    def on_progress(self, progress: Progress) -> None:
        step = (progress.epoch - 1) * self.steps_per_epoch + progress.step
        self.last_step = step
        if step // self.every <= self.last_logged // self.every:
            return
        self.last_logged = step
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        for key, value in (
            ("train_loss", progress.loss),
            ("train_accuracy", progress.accuracy),
            ("lr", lr),
            ("images_per_second", progress.images_per_second),
        ):
            self.writer.add_scalar(f"step/{key}", value, step)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        step = record["epoch"] * self.steps_per_epoch
        self.last_step = step
        for key, value in record.items():
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(f"epoch/{key}", value, step)
        self.writer.flush()  # an epoch's figures survive a kill of the run

    def on_test_end(self, test: TestEnd) -> None:
        from cnnspec.render.confusion import confusion_figure

        self.writer.add_scalar("test/accuracy", test.accuracy, self.last_step)
        self.writer.add_scalar("test/loss", test.loss, self.last_step)
        k = len(test.class_names)
        matrix = (test.labels * k + test.predictions).bincount(minlength=k * k).view(k, k)
        figure = confusion_figure(matrix.numpy(), test.class_names, f"{self.spec.name}: test (best weights)")
        self._image("test/confusion_matrix", _figure_png(figure))

    def on_train_end(self, result: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        curves = self.folder.parent / "curves.png"
        if curves.is_file():
            self._image("curves", curves.read_bytes())
        figures = {
            f"hparam/{key}": value
            for key, value in result.items()
            if (key.startswith(("test_", "best_")) or key == "wall_seconds")
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and key != "best_epoch"
        }
        params = {key: scalar(value) for key, value in hyperparameters(self.spec).items()}
        for summary in hparams(params, figures):
            self.writer.file_writer.add_summary(summary)
        for key, value in figures.items():
            self.writer.add_scalar(key, value, self.last_step)
        self.end("FINISHED")

    def end(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()

    def _image(self, tag: str, png: bytes) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(png)) as image:
            pixels = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
        self.writer.add_image(tag, pixels, self.last_step, dataformats="HWC")


def _figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
