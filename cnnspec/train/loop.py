"""The training loop: one screen of steps, plus the bookkeeping that makes it resumable.

Reproducibility: the data order of epoch e is a permutation drawn from a generator
seeded with (seed, e); every other random draw (augmentation, dropout, mixup) comes
from torch's global RNG, whose state is saved with each checkpoint. Resuming restores
weights, optimizer, scaler, RNG and the step count, and skips the batches already done,
so on a CPU a resumed run ends with the same weights as an uninterrupted one.

Distributed (torchrun): the model trains in DistributedDataParallel, each rank on its shard
of every epoch (cnnspec.train.distributed); sums are reduced before they are recorded, and
rank 0 alone writes. One process takes none of those paths.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnspec.build import build
from cnnspec.errors import TrainingError
from cnnspec.train.augment import BatchAugment
from cnnspec.train.callbacks import Callback, CallbackList, Progress, Step, TrainStart
from cnnspec.train.checkpoint import (
    STATE_FORMAT,
    all_finite,
    load_state,
    read_weights,
    save_state,
    save_weights,
)
from cnnspec.train.distributed import (
    LOCAL,
    Dist,
    all_reduce_sum,
    any_rank,
    convert_sync_batchnorm,
    gather,
    rank_seed,
    shard_epoch,
    shard_split,
    share,
    steps_per_epoch,
    wrap,
)
from cnnspec.train.evaluation import EvalResult, evaluate_model
from cnnspec.train.optim import Schedule, make_optimizer, param_groups
from cnnspec.train.precision import Precision, resolve
from cnnspec.train.progress import Reporter, ReporterCallback
from cnnspec.train.records import plot_curves, read_metrics, write_json, write_metrics
from cnnspec.train.setup import Session
from cnnspec.train.signals import StopFlag, TrainingInterrupted
from cnnspec.train.sources import Source, TensorSource
from cnnspec.train.state import BestEpoch, EpochTally, TrainState

# Steps between host syncs (loss check, progress) on a GPU; a CPU syncs every step anyway.
CUDA_SYNC_EVERY = 20


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled indices of epoch `epoch` (1-based): a pure function of (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class Trainer:
    """Trains a Session's model; `fit()` runs to the end (or to early stopping) and returns result.json's data.

    `reporter` receives the loop's messages and, through a ReporterCallback, its progress;
    `callbacks` are called after it (cnnspec.train.callbacks).
    """

    def __init__(
        self,
        session: Session,
        reporter: Reporter,
        stop: StopFlag,
        dist: Dist = LOCAL,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.s = session
        self.dist = dist
        self.spec = session.spec
        assert self.spec.data is not None  # prepare() refuses a spec without data
        self.data_spec = self.spec.data
        self.t = self.spec.train
        self.paths = session.paths
        self.reporter = reporter
        self.callbacks = CallbackList([ReporterCallback(reporter), *callbacks])
        self.stop = stop
        self.precision: Precision = resolve(self.t)
        if dist.enabled and self.precision.device.type == "cuda":  # this rank's GPU (process_group set it)
            self.precision = Precision(torch.device("cuda", torch.cuda.current_device()), self.precision.amp)
        device = self.precision.device

        torch.manual_seed(self.t.seed)  # the same initial weights on every rank
        self.model = build(session.graph).to(device)
        if self.t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.t.sync_batchnorm and dist.enabled:
            convert_sync_batchnorm(self.model)
        elif self.t.sync_batchnorm:
            reporter.message("train.sync_batchnorm only matters in distributed runs; ignored in one process")
        if dist.rank > 0:  # rank 0 keeps a one-process run's stream; the others draw their own augmentation
            torch.manual_seed(rank_seed(self.t.seed, dist.rank))
        self.forward: nn.Module = torch.compile(self.model) if self.t.compile else self.model  # type: ignore[assignment]
        # Evaluation runs the plain module; training runs DistributedDataParallel (wrapped per epoch in _wrap).
        self.eval_forward = self.forward
        if dist.enabled and self.t.compile:
            self.eval_forward = torch.compile(self.model)  # type: ignore[assignment]
        self._wrapped_for: tuple[bool, ...] | None = None
        self.backbone = [
            self.model.layer(n.id)
            for n in session.graph.nodes
            if not n.layer.trainable()  # frozen (a torchvision backbone with freeze: true)
        ]
        if self.t.unfreeze is not None and not self.backbone:
            raise TrainingError(
                "train.unfreeze is set but no torchvision layer has freeze: true",
                hint="freeze a backbone (`- torchvision: {model: resnet18, freeze: true}`) or remove train.unfreeze",
            )
        lr_scale = self.t.unfreeze.lr_scale if self.t.unfreeze is not None else 1.0
        self.optimizer = make_optimizer(
            param_groups(self.model, self.spec.optimizer, self.backbone, lr_scale), self.spec.optimizer
        )
        self.scaler = self.precision.scaler()

        self.train_source: Source = session.data.train
        self.val_source = session.data.val
        self.test_source = session.data.test
        if session.data.in_memory:  # one copy on the device, for the whole run
            self.train_source = _to(self.train_source, device)
            self.val_source = _to(self.val_source, device) if self.val_source is not None else None
            self.test_source = _to(self.test_source, device) if self.test_source is not None else None
        n = len(self.train_source)
        self.batch_size = self.data_spec.batch_size
        # The last partial batch is dropped (a batch of 1 breaks batchnorm); a set smaller than a batch is one batch.
        # Distributed: batch_size is per process, and every rank takes the same number of steps.
        self.steps_per_epoch = steps_per_epoch(n, self.batch_size, dist.world_size)
        self.schedule = Schedule(self.spec.schedule, self.spec.optimizer.lr, self.steps_per_epoch, self.t.epochs)
        info = session.info
        self.num_classes = len(info.class_names)
        self.augment = BatchAugment(
            [item.op for item in self.data_spec.augment],
            channels=self.spec.model.input.channels,
            mean=info.mean,
            std=info.std,
            num_classes=self.num_classes,
            device=device,
        )
        self.eval_batch_size = self.data_spec.eval_batch_size or 2 * self.batch_size
        self.monitor = self.t.early_stopping.metric if self.t.early_stopping is not None else "val_accuracy"
        if self.val_source is None and self.t.early_stopping is not None:
            reporter.message("train.early_stopping has no effect: there is no validation split (data.val_split is 0)")
        self.params = list(self.model.parameters())

        # Progress through the run; all of it is in the training state.
        self.state = TrainState.fresh(device)
        self.best_rule = BestEpoch.from_spec(self.t.early_stopping)
        self.stop_agreed = False  # distributed: a stop that every rank has seen (at the end of an epoch)
        self.history: list[dict[str, Any]] = []
        if session.resumed:
            self._restore()

    # --- the loop -------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train to train.epochs (or early stopping), test the best weights, write result.json."""
        self._started, self._wall_before = time.perf_counter(), self.state.wall_seconds
        try:
            self.callbacks.on_train_start(
                TrainStart(
                    model=self.model,
                    optimizer=self.optimizer,
                    run=self.paths.root,
                    epochs=self.t.epochs,
                    steps_per_epoch=self.steps_per_epoch,
                    epoch=self.state.epoch,
                    step=self.state.step,
                    rank=self.dist.rank,
                    world_size=self.dist.world_size,
                    device=self.precision.device,
                )
            )
            while self.state.epoch < self.t.epochs and not self.state.stopped_early:
                self._train_epoch(self.state.epoch + 1)
                self._end_epoch(self.state.epoch + 1)
                stop = self.stop_agreed if self.dist.enabled else self.stop.requested
                if stop and self.state.epoch < self.t.epochs and not self.state.stopped_early:
                    self.reporter.message(
                        f"interrupted after epoch {self.state.epoch}; state saved in {self.paths.checkpoints}"
                    )
                    raise TrainingInterrupted(self.paths.root)
            self._tick()
            result = self._finish()
            self.callbacks.on_train_end(result)
            return result
        finally:
            self.reporter.close()

    def _tick(self) -> None:
        """Bring the run's total wall time (over all resumes) up to now."""
        self.state.wall_seconds = self._wall_before + time.perf_counter() - self._started

    def _train_epoch(self, epoch: int) -> None:
        device = self.precision.device
        self._set_frozen(epoch)
        self.model.train()
        take = self.steps_per_epoch * self.batch_size
        if self.dist.enabled:
            self._wrap()
            order = shard_epoch(self.train_source, self.t.seed, epoch, self.dist, take)
        else:
            order = epoch_order(len(self.train_source), self.t.seed, epoch)[:take]
        tally = self.state.tally
        self.callbacks.on_epoch_start(epoch, tally.batches)
        sync_every = CUDA_SYNC_EVERY if device.type == "cuda" else 1
        bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        batches = self.train_source.batches(order, self.batch_size, device, start=tally.batches)
        t0 = time.perf_counter()
        seconds_before = tally.seconds
        lr = self.schedule.apply(self.optimizer, self.state.step)
        while True:
            if self._stop_now(tally.batches, sync_every):
                tally.seconds = seconds_before + time.perf_counter() - t0
                self._interrupt(epoch)
            try:
                images, labels = next(batches)
            except StopIteration:
                break
            except Exception:
                # e.g. DataLoader workers killed by the same Ctrl-C (a distributed rank cannot save alone:
                # torchrun's workers have their own session, so a terminal's Ctrl-C does not reach theirs)
                if self.stop.requested and not self.dist.enabled:
                    tally.seconds = seconds_before + time.perf_counter() - t0
                    self._interrupt(epoch)
                raise
            lr = self.schedule.apply(self.optimizer, self.state.step)
            step = Step(epoch, tally.batches + 1, self.state.step + 1)
            try:
                loss, correct, skipped = self._step(step, images, labels)
            except torch.OutOfMemoryError:
                raise TrainingError(
                    f"CUDA ran out of memory at batch size {self.batch_size} (epoch {epoch}, step {tally.batches + 1})",
                    hint=f"lower data.batch_size (e.g. --set data.batch_size={max(self.batch_size // 2, 1)}), "
                    "or use mixed precision (--set train.amp=fp16 or bf16)",
                ) from None
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), tally.batches + 1, bad_step)
            tally.loss_sum += loss.detach().double() * labels.shape[0]
            tally.correct += correct
            tally.seen += labels.shape[0]
            tally.skipped += skipped
            tally.batches += 1
            self.state.step += 1
            self.callbacks.on_step_end(step, self.model, loss)
            if tally.batches % sync_every == 0 or tally.batches == self.steps_per_epoch:
                self._check_finite(epoch, bad_step, sync_every)
                seconds = seconds_before + time.perf_counter() - t0
                self.callbacks.on_progress(  # distributed: this rank's shard, images/s of all ranks
                    Progress(
                        epoch,
                        tally.batches,
                        self.steps_per_epoch,
                        float(tally.loss_sum) / tally.seen,
                        float(tally.correct) / tally.seen,
                        tally.seen * self.dist.world_size / max(seconds, 1e-9),
                    )
                )
        tally.seconds = seconds_before + time.perf_counter() - t0
        self._check_finite(epoch, bad_step, sync_every)
        self.last_lr = lr

    def _stop_now(self, done: int, every: int) -> bool:
        """Stop before the next step? Ranks agree (every `every` steps) so that they stop at the same one."""
        if not self.dist.enabled:
            return self.stop.requested
        return done % every == 0 and any_rank(self.stop.requested, self.precision.device)

    def _wrap(self) -> None:
        """(Re)wrap the model in DDP when the set of trainable parameters changed (start, unfreezing):
        DDP's gradient buckets cover the parameters that required grad when it was built."""
        trainable = tuple(p.requires_grad for p in self.params)
        if trainable == self._wrapped_for:
            return
        ddp = wrap(self.model, self.precision.device)
        self.forward = torch.compile(ddp) if self.t.compile else ddp  # type: ignore[assignment]
        self._wrapped_for = trainable

    def _step(self, step: Step, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step; returns the loss, the number of correct predictions, and 1 if AMP skipped it."""
        x, target = self.callbacks.on_batch(step, *self.augment(images, labels))
        if self.t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), target, label_smoothing=self.t.label_smoothing)
        self.scaler.scale(loss).backward()
        self.callbacks.on_after_backward(step, self.model)
        if self.t.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.params, self.t.grad_clip)
        skipped = 0
        if self.scaler.is_enabled():
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped = int(self.scaler.get_scale() < scale)  # the scale drops exactly when the step was skipped
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        hard = target.argmax(dim=1) if target.ndim == 2 else target  # mixup/cutmix: the dominant class
        correct = (logits.detach().argmax(dim=1) == hard).sum()
        return loss.detach(), correct, skipped

    def _check_finite(self, epoch: int, bad_step: torch.Tensor, every: int = 1) -> None:
        step = int(bad_step)
        where = (
            f"the last checkpoint (epoch {self.state.epoch})"
            if self.state.epoch
            else "no checkpoint (none was finished)"
        )
        hint = f"kept {where}; lower optimizer.lr, add train.grad_clip, or check the data normalisation"
        if step >= 0:
            raise TrainingError(
                f"the loss became non-finite (NaN or inf) at epoch {epoch}, step {step}; training stopped", hint=hint
            )
        # The loss can stay finite while the weights overflow: batchnorm turns inf activations into zeros.
        if not all_finite(self.model):
            at = (
                f"step {self.state.tally.batches}"
                if every == 1
                else f"step {self.state.tally.batches} (checked every {every})"
            )
            raise TrainingError(
                f"the weights became non-finite (NaN or inf) at epoch {epoch}, {at}; training stopped", hint=hint
            )

    def _set_frozen(self, epoch: int) -> None:
        """Frozen backbones train from train.unfreeze.epoch on, at lr × lr_scale."""
        if not self.backbone:
            return
        unfreeze = self.t.unfreeze
        trainable = unfreeze is not None and epoch >= unfreeze.epoch
        for module in self.backbone:
            for p in module.parameters():
                p.requires_grad_(trainable)
        if trainable and unfreeze is not None and epoch == unfreeze.epoch and self.state.tally.batches == 0:
            self.reporter.message(f"epoch {epoch}: backbone unfrozen, lr × {unfreeze.lr_scale}")

    # --- after each epoch ---------------------------------------------------------------

    def _end_epoch(self, epoch: int) -> None:
        tally = self.state.tally
        loss_sum, correct, seen = float(tally.loss_sum), float(tally.correct), tally.seen
        if self.dist.enabled:  # all ranks' sums (and whether any rank was asked to stop)
            loss_sum, correct, all_seen, stops = all_reduce_sum(
                [tally.loss_sum, tally.correct, tally.seen, float(self.stop.requested)], self.precision.device
            )
            seen, self.stop_agreed = int(all_seen), stops > 0
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": self.last_lr,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": None,
            "val_accuracy": None,
            "images_per_second": seen / max(tally.seconds, 1e-9),
            "seconds": tally.seconds,
            "skipped_steps": tally.skipped,  # a skipped step is skipped on every rank: not summed
        }
        if self.val_source is not None:
            val = self._validate(self.val_source)
            record["val_loss"], record["val_accuracy"] = val.loss, val.accuracy
        self.state.skipped_total += tally.skipped
        self.state.epoch = epoch
        self.state.tally = EpochTally.zeros(self.precision.device)
        self.history.append(record)
        self._tick()
        improved = self._track_best(record)
        if not all_finite(self.model):
            kept = f"the checkpoint of epoch {epoch - 1}" if epoch > 1 else "no checkpoint (none was finished)"
            raise TrainingError(
                f"the weights hold NaN or inf after epoch {epoch}; training stopped",
                hint=f"kept {kept}; lower optimizer.lr or add train.grad_clip",
            )
        # metrics.jsonl before the state: a kill between the two leaves a line that resume drops
        # (it keeps the epochs up to the state's), never a saved epoch whose line is lost.
        if self.dist.is_main:
            write_metrics(self.paths, self.history)
            if improved:
                save_weights(self.model, self.paths.weights("best"), {"epoch": str(epoch)})
        self._save(epoch)
        self.callbacks.on_epoch_end(record)

    def _track_best(self, record: dict[str, Any]) -> bool:
        """Update the best epoch and early stopping; True when this epoch is the new best."""
        improved = self.best_rule.update(self.state, record)
        if self.state.stopped_early:
            self.reporter.message(
                f"early stopping: {self.monitor} has not improved for {self.state.bad_epochs} epochs "
                f"(best {self.state.best:.4f} at epoch {self.state.best_epoch})"
            )
        return improved

    def _validate(self, source: Source) -> Any:
        """Validation; distributed, each rank evaluates its share of the split and the sums are reduced,
        so every rank sees the same figures (and makes the same best-epoch and early-stopping choices)."""
        if not self.dist.enabled:
            return self._evaluate(source)
        part = self._evaluate(shard_split(source, self.dist))
        n = len(part.labels)
        loss_sum, correct, total = all_reduce_sum(
            [part.loss * n if n else 0.0, int((part.predictions == part.labels).sum()), n], self.precision.device
        )
        return EvalResult(loss_sum / total, correct / total, part.predictions, part.labels)

    def _evaluate(self, source: Source) -> Any:
        return evaluate_model(
            self.eval_forward,
            source,
            self.augment.normalize,
            batch_size=self.eval_batch_size,
            precision=self.precision,
            channels_last=self.t.channels_last,
        )

    # --- checkpoints ----------------------------------------------------------------------

    def _state(self, epoch: int, tally: EpochTally | None = None) -> dict[str, Any]:
        rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": STATE_FORMAT,
            "architecture_hash": self.s.info.architecture_hash,
            "spec_hash": self.s.info.spec_hash,
            "world_size": self.dist.world_size,
            **replace(self.state, epoch=epoch, tally=tally or self.state.tally).to_dict(),
            # A copy of the weights: the state alone resumes a run, and can never disagree with them.
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
        }

    def _save(self, epoch: int) -> None:
        if not self.dist.enabled:
            save_weights(self.model, self.paths.weights("last"), {"epoch": str(epoch)})
            save_state(self.paths.state, self._state(epoch))
            return
        # Every rank takes part (the sums and RNG states are collected), rank 0 writes.
        tally = self.state.tally
        sums = all_reduce_sum([tally.loss_sum, tally.correct, tally.seen], self.precision.device)
        rngs = gather(self._rank_rng())
        if not self.dist.is_main:
            return
        total = EpochTally(
            tally.batches,
            int(sums[2]),
            tally.seconds,
            tally.skipped,
            torch.tensor(sums[0], dtype=torch.float64),
            torch.tensor(int(sums[1]), dtype=torch.int64),
        )
        save_weights(self.model, self.paths.weights("last"), {"epoch": str(epoch)})
        save_state(self.paths.state, {**self._state(epoch, total), "rng_ranks": rngs})

    def _rank_rng(self) -> dict[str, torch.Tensor]:
        """This rank's random state: the CPU generator's and its own GPU's."""
        rng = {"cpu": torch.get_rng_state()}
        if self.precision.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.precision.device)
        return rng

    def _interrupt(self, epoch: int) -> None:
        """Save a mid-epoch state (weights are finite: checked here) and stop with KeyboardInterrupt."""
        if all_finite(self.model):
            self._tick()
            self._save(self.state.epoch)
            where = f"epoch {epoch}, step {self.state.tally.batches} of {self.steps_per_epoch}"
            self.reporter.message(f"interrupted at {where}; state saved in {self.paths.checkpoints}")
        raise TrainingInterrupted(self.paths.root)

    def _read_state(self) -> dict[str, Any]:
        state = load_state(self.paths.state)
        # The state carries its own weights, but a damaged best.safetensors would otherwise
        # surface only at the very end (the test run) or in an export: refuse it now.
        for which in ("best", "last"):
            if self.paths.weights(which).is_file():
                read_weights(self.paths.weights(which))
        if state["architecture_hash"] != self.s.info.architecture_hash:
            from cnnspec.errors import CheckpointError

            raise CheckpointError(f"{self.paths.state} belongs to a different architecture than {self.paths.spec}")
        return state

    def _restore(self) -> None:
        # Distributed: rank 0 reads the run directory (the others may be on machines without it) and sends the state.
        state = share(self.dist, self._read_state) if self.dist.enabled else self._read_state()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.dist.rank == 0:
            torch.set_rng_state(state["rng"]["cpu"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        else:
            self._restore_rank_rng(state)
        self.state = TrainState.from_dict(state, self.precision.device)
        if self.dist.rank > 0:  # the saved sums are all ranks' together: rank 0 carries them on
            self.state.tally.loss_sum.zero_()
            self.state.tally.correct.zero_()
            self.state.tally.seen = 0
        saved_world = state.get("world_size", 1)
        if saved_world != self.dist.world_size:
            self._rescale_progress(saved_world)
        self.history = [m for m in read_metrics(self.paths) if m["epoch"] <= self.state.epoch]
        at = (
            f"epoch {self.state.epoch + 1}, step {self.state.tally.batches + 1}"
            if self.state.tally.batches
            else f"epoch {self.state.epoch + 1}"
        )
        if self.state.epoch < self.t.epochs and not self.state.stopped_early:
            self.reporter.message(f"resuming {self.paths.root} at {at} (step {self.state.step} overall)")

    def _restore_rank_rng(self, state: dict[str, Any]) -> None:
        """Ranks other than 0 continue their own saved stream; a rank the saving run did not have
        starts a fresh one derived from (seed, rank, step)."""
        saved = state.get("rng_ranks") or []
        if self.dist.rank < len(saved):
            torch.set_rng_state(saved[self.dist.rank]["cpu"])
            if "cuda" in saved[self.dist.rank] and self.precision.device.type == "cuda":
                torch.cuda.set_rng_state(saved[self.dist.rank]["cuda"], self.precision.device)
        else:
            torch.manual_seed(rank_seed(self.t.seed, self.dist.rank, state["step"]))

    def _rescale_progress(self, saved_world: int) -> None:
        """A state saved by N processes, resumed by M: the same images seen, counted in M-process steps.

        Steps of all ranks together read a prefix of the epoch's order (see shard_epoch), so
        `batches` steps of N processes are `batches·N/M` steps of M; the step count (which the
        learning-rate schedule reads) restarts from the completed epochs at M processes' steps per epoch.
        """
        batches = min(self.state.tally.batches * saved_world // self.dist.world_size, self.steps_per_epoch)
        self.state.tally.batches = batches
        self.state.step = self.state.epoch * self.steps_per_epoch + batches
        self.reporter.message(
            f"the checkpoint was written by {saved_world} process(es), this run has {self.dist.world_size}: "
            f"{self.steps_per_epoch} steps per epoch from now on"
        )

    # --- the end --------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        """Test the best weights, write result.json and curves.png (rank 0 alone, with the weights it wrote)."""
        if not self.dist.is_main:
            return {}
        best = self.paths.weights("best")
        if best.is_file():
            from cnnspec.train.checkpoint import load_weights

            load_weights(self.model, best)
        result: dict[str, Any] = {
            "test_accuracy": None,
            "test_loss": None,
            "best_epoch": self.state.best_epoch,
            "best_" + self.monitor: self.state.best,
            "epochs": self.state.epoch,
            "stopped_early": self.state.stopped_early,
            "wall_seconds": round(self.state.wall_seconds, 3),
            "device": _device_name(self.precision.device),
            "processes": self.dist.world_size,
            "amp": self.precision.amp,
            "skipped_steps": self.state.skipped_total,
            "images_per_second": _mean([m["images_per_second"] for m in self.history]),
        }
        if self.test_source is not None:
            test = self._evaluate(self.test_source)
            result["test_accuracy"], result["test_loss"] = test.accuracy, test.loss
        write_json(self.paths.result, result)
        if self.history:
            plot_curves(self.history, self.paths.curves)
        return result


def _to(source: Source, device: torch.device) -> Source:
    return source.to(device) if isinstance(source, TensorSource) else source


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    import os

    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
