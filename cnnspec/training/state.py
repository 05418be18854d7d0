"""The run's progress as data: `TrainState` (saved with every checkpoint) and `BestEpoch` (which epoch is best,
and when early stopping ends the run).

A field of `TrainState` is a key of `last.state.pt` under the same name: adding a field is the one edit
that saves and restores it (`to_dict` / `from_dict` read the dataclass's own fields), plus an entry in
`_ADDED_LATER` with the value a state written before the field existed means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch

from cnnspec.spec.model import EarlyStopping


@dataclass
class EpochTally:
    """Running sums of the current epoch; the tensors stay on the device (no sync per step)."""

    batches: int = 0  # optimizer steps of this epoch done
    seen: int = 0  # training images of this epoch seen (this rank's)
    seconds: float = 0.0  # time spent in this epoch's steps, over all resumes
    skipped: int = 0  # steps the fp16 GradScaler skipped (inf/NaN gradients)
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))  # Σ loss × batch
    correct: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.int64))

    @classmethod
    def zeros(cls, device: torch.device) -> EpochTally:
        """A fresh epoch's tally with its sums on `device`."""
        return cls(
            loss_sum=torch.zeros((), dtype=torch.float64, device=device),
            correct=torch.zeros((), dtype=torch.int64, device=device),
        )

    def add(self, loss: torch.Tensor, correct: torch.Tensor, images: int, skipped: int) -> None:
        """Count one optimizer step: its batch's mean loss, correct predictions and size."""
        self.loss_sum += loss.double() * images
        self.correct += correct
        self.seen += images
        self.skipped += skipped
        self.batches += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "seen": self.seen,
            "seconds": self.seconds,
            "skipped": self.skipped,
            "loss_sum": self.loss_sum.cpu(),
            "correct": self.correct.cpu(),
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any], device: torch.device) -> EpochTally:
        return cls(
            stored["batches"],
            stored["seen"],
            stored["seconds"],
            stored["skipped"],
            stored["loss_sum"].to(device),
            stored["correct"].to(device),
        )


@dataclass
class TrainState:
    """Everything about the run's progress that a resume needs besides the model, optimizer, scaler and RNG.

    Each field is saved in `last.state.pt` under its own name (the format cnnspec has always written).
    """

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken (the learning-rate schedule is a function of it)
    tally: EpochTally = field(default_factory=EpochTally)  # the current epoch's running sums
    best: float | None = None  # the monitored metric at the best epoch (None: no epoch validated yet)
    best_loss: float = math.inf  # val_loss of the best epoch: breaks ties of val_accuracy
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one without an improvement (early stopping's count)
    stopped_early: bool = False
    wall_seconds: float = 0.0  # total wall time of the run, over all resumes
    skipped_total: int = 0  # fp16 steps skipped in the epochs completed
    metric: str | None = None  # the metric `best` is a value of (None: no epoch recorded, or an older state)
    # The learning-rate plan: {"from_epoch": 0.0, "epochs": E} as first planned, then one entry per resume that
    # changed train.epochs, with "extend" (continue/restart); None: a state written before cnnspec recorded it.
    lr_plan: list[dict[str, Any]] | None = None

    @classmethod
    def fresh(cls, device: torch.device) -> TrainState:
        """The state of a run that has not taken a step, its sums on `device`."""
        return cls(tally=EpochTally.zeros(device))

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values and CPU tensors (what `torch.load(weights_only=True)` reads back); a field
        added after format 1 is left out while it holds the value that its absence means."""
        return {
            f.name: self._save(getattr(self, f.name))
            for f in fields(self)
            if f.name not in _ADDED_LATER or getattr(self, f.name) != _ADDED_LATER[f.name]
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any], device: torch.device) -> TrainState:
        """The state from a training-state dict (other keys, such as the weights, are left alone)."""
        values = {
            f.name: stored.get(f.name, _ADDED_LATER[f.name]) if f.name in _ADDED_LATER else stored[f.name]
            for f in fields(cls)
        }
        values["tally"] = EpochTally.from_dict(values["tally"], device)
        return cls(**values)

    @staticmethod
    def _save(value: Any) -> Any:
        return value.to_dict() if isinstance(value, EpochTally) else value


# Fields that states written by an older cnnspec lack, with the value such a state means.
_ADDED_LATER: dict[str, Any] = {"metric": None, "lr_plan": None}


@dataclass(frozen=True)
class BestEpoch:
    """Which epoch is the best so far, and when early stopping ends the run.

    An epoch is better when its metric beats the best by **more than** `min_delta`
    (val_accuracy: `value > best + min_delta`; val_loss: `value < best - min_delta`), so an
    improvement of exactly `min_delta` does not count. A val_accuracy **exactly equal** to the
    best one is better when its val_loss is strictly lower (a small validation set saturates at
    100%); `min_delta` plays no part in that tie-break, and val_loss as the metric has none.
    After `patience` epochs in a row that are not better, the run stops (`patience` None: never).
    """

    metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    min_delta: float = 0.0
    patience: int | None = None

    @classmethod
    def from_spec(cls, early_stopping: EarlyStopping | None) -> BestEpoch:
        """train.early_stopping's rule; without it, the best val_accuracy and no stopping."""
        if early_stopping is None:
            return cls()
        return cls(early_stopping.metric, early_stopping.min_delta, early_stopping.patience)

    def stops(self, bad_epochs: int) -> bool:
        """Whether `bad_epochs` epochs in a row without an improvement end the run under this rule."""
        return self.patience is not None and bad_epochs >= self.patience

    def is_better(self, value: float, loss: float, state: TrainState) -> bool:
        """Whether an epoch with metric `value` and val_loss `loss` beats the best one in `state`."""
        if state.best is None:
            return True
        if self.metric == "val_loss":
            return value < state.best - self.min_delta
        return value > state.best + self.min_delta or (value == state.best and loss < state.best_loss)

    def update(self, state: TrainState, record: dict[str, Any]) -> bool:
        """Record epoch `record` (a metrics.jsonl line) in `state`; True when it is the new best epoch.

        Without validation (the metric is None) the latest epoch is the best one known.
        Sets `state.stopped_early` when the patience is used up.
        """
        state.metric = self.metric
        value = record.get(self.metric)
        if value is None:
            state.best_epoch = record["epoch"]
            return True
        if self.is_better(value, record["val_loss"], state):
            state.best, state.best_loss, state.best_epoch, state.bad_epochs = (
                value,
                record["val_loss"],
                record["epoch"],
                0,
            )
            return True
        state.bad_epochs += 1
        if self.stops(state.bad_epochs):
            state.stopped_early = True
        return False


def rescore_best(
    stored: dict[str, Any], rule: BestEpoch, tracked: str | None, history: list[dict[str, Any]]
) -> str | None:
    """Bring a saved training state (`stored`, changed in place) to `rule`'s metric when its best was
    tracked with another one (`tracked`; None: unknown, taken to be the same); returns the note to show.

    The best weights kept (best.safetensors, from epoch `best_epoch`) stay the best so far: their
    metrics.jsonl record gives their value under the new metric, which later epochs must beat, so
    result.json's `best_<metric>` and best.safetensors keep describing one epoch. Earlier epochs that
    the new metric would have preferred cannot be chosen (their weights were not kept). The count of
    epochs without an improvement starts again from 0: the new metric's patience counts from here.
    Without a best value yet (no validation split) there is nothing to rescore.
    """
    if tracked is None or tracked == rule.metric or stored.get("best") is None:
        return None
    epoch = int(stored["best_epoch"])
    record = next((r for r in history if r["epoch"] == epoch), None)
    before = f"train.early_stopping watches {rule.metric} now, {tracked} before"
    stored.update(metric=rule.metric, bad_epochs=0)
    if record is None or record.get(rule.metric) is None:
        stored.update(best=None, best_loss=math.inf)
        return (
            f"{before}; metrics.jsonl has no {rule.metric} of the best epoch so far ({epoch}), so the next "
            "epoch becomes the best; the count of epochs without an improvement starts again"
        )
    value, loss = record[rule.metric], record["val_loss"]
    stored.update(best=value, best_loss=loss if loss is not None else math.inf)
    return (
        f"{before}: the best weights so far (epoch {epoch}) count as {rule.metric} {value:.4f} from here on, "
        "and the count of epochs without an improvement starts again"
    )
