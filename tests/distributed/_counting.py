"""Count what each rank trains on, through the trainer's supported callback hooks.

`Counter` records, per epoch, the optimizer steps a process took, the images it trained on and
the sum of its batch losses × batch sizes: figures seen from outside the loop, to compare with
hand arithmetic and with the metrics the loop writes.

Run as a torchrun worker script (`python -m torch.distributed.run … _counting.py [--digests] SPEC OUT KEY=VALUE…`)
it trains through `cnnspec.train(...)` with a Counter and, at the end, prints one line
`CNNSPEC_COUNT <rank> <json>` to stdout (os.write: one write, no file, no audit event), so the
test reads every rank's counts while rank 1 still writes no file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cnnspec.training.callbacks import Callback, Step, TrainStart

if TYPE_CHECKING:
    import torch
    from torch import nn

PREFIX = "CNNSPEC_COUNT "


@dataclass
class EpochCount:
    steps: int = 0  # on_step_end calls: optimizer steps this process took
    images: int = 0  # images of the batches this process trained on
    loss_sum: float = 0.0  # Σ batch loss × batch size (this process's batches)
    digests: list[str] = field(default_factory=list)  # with Counter(digests=True): one per image trained on


class Counter(Callback):
    def __init__(self, report: bool = False, digests: bool = False) -> None:
        self.report = report  # print the counts to stdout at the end (torchrun workers)
        self.digests = digests  # also a digest of each image's pixels (for runs without random augmentation)
        self.rank = 0
        self.epochs: dict[int, EpochCount] = {}
        self._batch = 0

    def on_train_start(self, start: TrainStart) -> None:
        self.rank = start.rank

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._batch = int(images.shape[0])
        count = self.epochs.setdefault(step.epoch, EpochCount())
        count.images += self._batch
        if self.digests:
            count.digests += [hashlib.sha256(image.cpu().numpy().tobytes()).hexdigest()[:16] for image in images]
        return images, targets

    def on_step_end(self, step: Step, model: nn.Module, loss: torch.Tensor) -> None:
        count = self.epochs[step.epoch]
        count.steps += 1
        count.loss_sum += float(loss) * self._batch

    def on_train_end(self, result: dict[str, Any]) -> None:
        if self.report:
            data = {str(epoch): asdict(count) for epoch, count in self.epochs.items()}
            os.write(1, f"{PREFIX}{self.rank} {json.dumps(data)}\n".encode())


def parse(stdout: str) -> dict[int, dict[int, EpochCount]]:
    """rank → epoch → counts, from the `CNNSPEC_COUNT` lines of a run's stdout."""
    found: dict[int, dict[int, EpochCount]] = {}
    for line in stdout.splitlines():
        if line.startswith(PREFIX):
            _, rank, data = line.split(" ", 2)
            found[int(rank)] = {int(epoch): EpochCount(**c) for epoch, c in json.loads(data).items()}
    return found


def main(argv: list[str]) -> None:
    import cnnspec

    digests = argv[:1] == ["--digests"]
    spec, out, *overrides = argv[digests:]
    counter = Counter(report=True, digests=digests)
    cnnspec.train(spec, out=out, overrides=overrides, progress=False, callbacks=[counter])


if __name__ == "__main__":
    main(sys.argv[1:])
