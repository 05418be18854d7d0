"""One process or DistributedDataParallel: what the training loop asks of the run's processes.

The loop calls the same methods in both cases; `OneProcess` answers them for a plain run and
`DataParallel` with torch.distributed collectives (cnnspec.training.distributed holds the primitives).
Every `DataParallel` method that communicates must be called by every rank at the same point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from cnnspec.spec.model import TrainSpec
from cnnspec.training.checkpoint import restore_main_rng
from cnnspec.training.distributed import (
    Dist,
    all_reduce_sum,
    any_rank,
    convert_sync_batchnorm,
    gather,
    rank_seed,
    shard_epoch,
    shard_split,
    share,
    wrap,
)
from cnnspec.training.evaluation import EvalResult
from cnnspec.training.progress import Reporter
from cnnspec.training.sources import Source, epoch_order
from cnnspec.training.state import EpochTally

Evaluate = Callable[[Source], EvalResult]


class Strategy(Protocol):
    """What the loop needs to know and do about the processes that train together."""

    rank: int
    world_size: int
    device: torch.device  # this process's training device

    @property
    def is_main(self) -> bool:
        """This process writes the run directory and reports (rank 0)."""
        ...

    @property
    def can_stop_alone(self) -> bool:
        """This process may save and stop on its own when its data loader fails after a Ctrl-C."""
        ...

    def prepare_model(self, model: nn.Module, train: TrainSpec, reporter: Reporter) -> None:
        """Adapt a freshly built (seeded) model: SyncBatchNorm, this rank's own random stream."""
        ...

    def training_forward(self, model: nn.Module, compile: bool) -> nn.Module:
        """The module to run training steps through (called at the start of every epoch)."""
        ...

    def evaluation_forward(self, model: nn.Module, compile: bool) -> nn.Module:
        """The module to evaluate with."""
        ...

    def epoch_indices(self, source: Source, seed: int, epoch: int, take: int) -> torch.Tensor:
        """This process's training indices of `epoch`, `take` of them."""
        ...

    def should_stop(self, requested: bool, done: int, every: int) -> bool:
        """Stop before the next step (`done` steps of the epoch done; ranks agree every `every` steps)?"""
        ...

    def agree_to_stop(self, requested: bool) -> bool:
        """True on every process when a stop was requested on any of them (at the end of an epoch)."""
        ...

    def sum(self, values: Sequence[float | int | torch.Tensor]) -> list[float]:
        """Each value summed over the processes."""
        ...

    def evaluate(self, evaluate: Evaluate, source: Source) -> EvalResult:
        """Loss and accuracy of the whole split, the same figures on every process."""
        ...

    def share(self, compute: Callable[[], Any]) -> Any:
        """`compute()` on the main process, its result on every process."""
        ...

    def checkpoint_tally(self, tally: EpochTally) -> tuple[EpochTally, list[Any] | None]:
        """The tally to save (all processes' sums) and every rank's RNG state (None for one process)."""
        ...

    def restore_rng(self, stored: dict[str, Any], seed: int) -> None:
        """Continue this process's random stream from a training state."""
        ...

    def own_tally(self, tally: EpochTally) -> EpochTally:
        """This process's part of a restored tally (the saved sums are all processes' together)."""
        ...


class OneProcess:
    """A plain run: no peers, nothing to reduce, shard or agree on."""

    rank = 0
    world_size = 1
    is_main = True
    can_stop_alone = True

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._forward: nn.Module | None = None

    def prepare_model(self, model: nn.Module, train: TrainSpec, reporter: Reporter) -> None:
        if train.sync_batchnorm:
            reporter.message("train.sync_batchnorm only matters in distributed runs; ignored in one process")

    def training_forward(self, model: nn.Module, compile: bool) -> nn.Module:
        if self._forward is None:
            self._forward = _compiled(model) if compile else model
        return self._forward

    def evaluation_forward(self, model: nn.Module, compile: bool) -> nn.Module:
        return self.training_forward(model, compile)  # the same compiled module

    def epoch_indices(self, source: Source, seed: int, epoch: int, take: int) -> torch.Tensor:
        return epoch_order(len(source), seed, epoch)[:take]

    def should_stop(self, requested: bool, done: int, every: int) -> bool:
        return requested

    def agree_to_stop(self, requested: bool) -> bool:
        return requested

    def sum(self, values: Sequence[float | int | torch.Tensor]) -> list[float]:
        return [float(v) for v in values]

    def evaluate(self, evaluate: Evaluate, source: Source) -> EvalResult:
        return evaluate(source)

    def share(self, compute: Callable[[], Any]) -> Any:
        return compute()

    def checkpoint_tally(self, tally: EpochTally) -> tuple[EpochTally, list[Any] | None]:
        return tally, None

    def restore_rng(self, stored: dict[str, Any], seed: int) -> None:
        restore_main_rng(stored["rng"])

    def own_tally(self, tally: EpochTally) -> EpochTally:
        return tally


class DataParallel:
    """One of `world_size` processes training one model in DistributedDataParallel (launched by torchrun).

    Each rank trains on its shard of every epoch; sums are all-reduced before they are recorded;
    rank 0 alone writes. Rank 0 keeps a one-process run's random stream, the others draw their own.
    """

    def __init__(self, dist: Dist, device: torch.device) -> None:
        self.dist = dist
        self.rank = dist.rank
        self.world_size = dist.world_size
        # On CUDA, this rank's own GPU (process_group set it).
        self.device = torch.device("cuda", torch.cuda.current_device()) if device.type == "cuda" else device
        self._forward: nn.Module | None = None
        self._wrapped_for: tuple[bool, ...] | None = None  # requires_grad of each parameter when wrapped
        self._evaluation: nn.Module | None = None

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def can_stop_alone(self) -> bool:
        # torchrun's workers have their own session: a terminal's Ctrl-C does not reach their loaders,
        # and a rank cannot save alone.
        return False

    def prepare_model(self, model: nn.Module, train: TrainSpec, reporter: Reporter) -> None:
        if train.sync_batchnorm:
            convert_sync_batchnorm(model)
        if self.rank > 0:  # rank 0 keeps a one-process run's stream; the others draw their own augmentation
            torch.manual_seed(rank_seed(train.seed, self.rank))

    def training_forward(self, model: nn.Module, compile: bool) -> nn.Module:
        """DDP, (re)wrapped when the set of trainable parameters changed (start, unfreezing):
        DDP's gradient buckets cover the parameters that required grad when it was built."""
        trainable = tuple(p.requires_grad for p in model.parameters())
        if self._forward is None or trainable != self._wrapped_for:
            ddp = wrap(model, self.device)
            self._forward = _compiled(ddp) if compile else ddp
            self._wrapped_for = trainable
        return self._forward

    def evaluation_forward(self, model: nn.Module, compile: bool) -> nn.Module:
        """The plain module (each rank evaluates its own share; no gradients to synchronise)."""
        if self._evaluation is None:
            self._evaluation = _compiled(model) if compile else model
        return self._evaluation

    def epoch_indices(self, source: Source, seed: int, epoch: int, take: int) -> torch.Tensor:
        return shard_epoch(source, seed, epoch, self.dist, take)

    def should_stop(self, requested: bool, done: int, every: int) -> bool:
        return done % every == 0 and self.agree_to_stop(requested)

    def agree_to_stop(self, requested: bool) -> bool:
        return any_rank(requested, self.device)

    def sum(self, values: Sequence[float | int | torch.Tensor]) -> list[float]:
        return all_reduce_sum(values, self.device)

    def evaluate(self, evaluate: Evaluate, source: Source) -> EvalResult:
        """Each rank evaluates its share of the split and the sums are reduced, so every rank sees
        the same figures (and makes the same best-epoch and early-stopping choices)."""
        part = evaluate(shard_split(source, self.dist))
        n = len(part.labels)
        loss_sum, correct, total = all_reduce_sum(
            [part.loss * n if n else 0.0, int((part.predictions == part.labels).sum()), n], self.device
        )
        return EvalResult(loss_sum / total, correct / total, part.predictions, part.labels)

    def share(self, compute: Callable[[], Any]) -> Any:
        # Rank 0 reads the run directory (the others may be on machines without it) and sends the result.
        return share(self.dist, compute)

    def checkpoint_tally(self, tally: EpochTally) -> tuple[EpochTally, list[Any] | None]:
        loss_sum, correct, seen = all_reduce_sum([tally.loss_sum, tally.correct, tally.seen], self.device)
        rngs = gather(self._rank_rng())
        total = EpochTally(
            tally.batches,
            int(seen),
            tally.seconds,
            tally.skipped,
            torch.tensor(loss_sum, dtype=torch.float64),
            torch.tensor(int(correct), dtype=torch.int64),
        )
        return total, rngs

    def restore_rng(self, stored: dict[str, Any], seed: int) -> None:
        """Rank 0 continues the main stream; the others their own saved one, and a rank the saving
        run did not have starts a fresh one derived from (seed, rank, step)."""
        if self.rank == 0:
            restore_main_rng(stored["rng"])
            return
        saved = stored.get("rng_ranks") or []
        if self.rank < len(saved):
            torch.set_rng_state(saved[self.rank]["cpu"])
            if "cuda" in saved[self.rank] and self.device.type == "cuda":
                torch.cuda.set_rng_state(saved[self.rank]["cuda"], self.device)
        else:
            torch.manual_seed(rank_seed(seed, self.rank, stored["step"]))

    def own_tally(self, tally: EpochTally) -> EpochTally:
        if self.rank > 0:  # the saved sums are all ranks' together: rank 0 carries them on
            tally.loss_sum.zero_()
            tally.correct.zero_()
            tally.seen = 0
        return tally

    def _rank_rng(self) -> dict[str, torch.Tensor]:
        """This rank's random state: the CPU generator's and its own GPU's."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng


def make_strategy(dist: Dist, device: torch.device) -> Strategy:
    """`DataParallel` when there are other processes, `OneProcess` otherwise; `device` is the one
    `train.device` resolved to."""
    return DataParallel(dist, device) if dist.enabled else OneProcess(device)


def _compiled(model: nn.Module) -> nn.Module:
    return torch.compile(model)  # type: ignore[return-value]
