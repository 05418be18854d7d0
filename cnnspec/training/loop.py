"""The training loop: `Trainer.fit` runs epochs of optimizer steps, then tests the best weights.

Where the rest lives: the run's progress is a `TrainState` and the best-epoch / early-stopping
rule a `BestEpoch` (cnnspec.training.state); the checkpoint files are written and read by
`Checkpoints` (cnnspec.training.checkpoint); one process or DistributedDataParallel is a
`Strategy` (cnnspec.training.strategy), so the loop reads the same for both; progress, loggers
and tests observe and inject through callbacks (cnnspec.training.callbacks).

Reproducibility: the data order of epoch e is a permutation drawn from a generator seeded
with (seed, e); every other random draw (augmentation, dropout, mixup) comes from torch's
global RNG, whose state is saved with each checkpoint. Resuming restores weights, optimizer,
scaler, RNG and the step count, and skips the batches already done, so on a CPU a resumed run
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnspec import cpu_tuning
from cnnspec.builder.graph_module import SpecModule, build
from cnnspec.errors import CheckpointError, TrainingError
from cnnspec.layers.conv import Conv2d
from cnnspec.preprocess import preprocessing_for
from cnnspec.rundir.info import serving_digest
from cnnspec.training.augment import BatchAugment
from cnnspec.training.callbacks import Callback, CallbackList, Progress, Step, TestEnd, TrainStart
from cnnspec.training.checkpoint import Checkpoints, all_finite
from cnnspec.training.distributed import LOCAL, Dist, steps_per_epoch
from cnnspec.training.ema import WeightEma
from cnnspec.training.evaluation import EvalResult, evaluate_model
from cnnspec.training.optim import Replan, Schedule, make_optimizer, param_groups
from cnnspec.training.precision import Precision, resolve, use_channels_last
from cnnspec.training.progress import Reporter, ReporterCallback
from cnnspec.training.records import plot_curves, write_json, write_metrics
from cnnspec.training.setup import Session, check_unfreeze, frozen_nodes
from cnnspec.training.signals import StopFlag, TrainingInterrupted
from cnnspec.training.sources import Batch, Source, TensorSource, epoch_order, worker_failure
from cnnspec.training.state import BestEpoch, EpochTally, TrainState
from cnnspec.training.strategy import make_strategy
from cnnspec.training.whiten import init_whitening

__all__ = ["Trainer", "epoch_order"]  # epoch_order lives in cnnspec.training.sources; kept importable here

# Steps between host syncs (loss check, progress) on a GPU; a CPU syncs every step anyway.
CUDA_SYNC_EVERY = 20


class Trainer:
    """Trains a Session's model; `fit()` runs to the end (or to early stopping) and returns result.json's data.

    `reporter` receives the loop's messages and, through a ReporterCallback, its progress;
    `callbacks` are called after it (cnnspec.training.callbacks).
    """

    def __init__(
        self,
        session: Session,
        reporter: Reporter,
        stop: StopFlag,
        dist: Dist = LOCAL,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        spec = session.spec
        assert spec.data is not None  # prepare() refuses a spec without data
        self.session = session
        self.train_spec = spec.train
        self.paths = session.paths
        self.reporter = reporter
        self.stop = stop
        self.callbacks = CallbackList([ReporterCallback(reporter), *callbacks])
        precision = resolve(self.train_spec)
        self.strategy = make_strategy(dist, precision.device)
        self.device = self.strategy.device
        self.precision = Precision(self.device, precision.amp)
        plugins = session.graph.has_plugin_layers
        self.channels_last = use_channels_last(self.train_spec, self.precision, plugin_layers=plugins)
        self.sync_every = CUDA_SYNC_EVERY if self.device.type == "cuda" else 1
        if self.device.type == "cpu" and (tuned := cpu_tuning.take_note()) is not None:
            reporter.message(tuned)  # what `cnnspec train` set before torch loaded (cnnspec/cpu_tuning.py)

        self.model = self._build_model()
        self.backbones = self._frozen_backbones()
        self._freeze_bn_weights()
        lr_scale = self.train_spec.unfreeze.lr_scale if self.train_spec.unfreeze is not None else 1.0
        self.optimizer = make_optimizer(
            param_groups(self.model, spec.optimizer, self.backbones, lr_scale), spec.optimizer
        )
        self.scaler = self.precision.scaler()

        data = session.data

        def place(source: Source) -> Source:  # in memory: one copy on the device, for the whole run
            return source.to(self.device) if data.in_memory and isinstance(source, TensorSource) else source

        self.train_source = place(data.train)
        self.val_source = place(data.val) if data.val is not None else None
        self.test_source = place(data.test) if data.test is not None else None
        self.batch_size = spec.data.batch_size
        self.eval_batch_size = spec.data.eval_batch_size or 2 * self.batch_size
        # The last partial batch is dropped (a batch of 1 breaks batchnorm); a set smaller than a batch is one batch.
        # Distributed: batch_size is per process, and every rank takes the same number of steps.
        self.steps_per_epoch = steps_per_epoch(len(self.train_source), self.batch_size, self.strategy.world_size)
        self.schedule = Schedule(spec.schedule, spec.optimizer.lr, self.steps_per_epoch, self.train_spec.epochs)
        self.augment = BatchAugment(
            [item.op for item in spec.data.augment],
            channels=spec.model.input.channels,
            mean=session.info.mean,
            std=session.info.std,
            num_classes=len(session.info.class_names),
            device=self.device,
        )
        self._whiten_convs()
        # train.ema: the averaged copy validates, tests and is saved as last/best.safetensors (what export
        # reads); the trained weights themselves live on in last.state.pt, which a resume continues from.
        self.ema = WeightEma(self.model, self.train_spec.ema) if self.train_spec.ema is not None else None
        self.best_rule = BestEpoch.from_spec(self.train_spec.early_stopping)
        if self.val_source is None and self.train_spec.early_stopping is not None:
            reporter.message("train.early_stopping has no effect: there is no validation split (data.val_split is 0)")

        info = session.info
        preprocessing = preprocessing_for(session.spec, info.mean, info.std).to_json()
        self.checkpoints = Checkpoints(self.paths, info, serving_digest(preprocessing, info.class_names))
        self.state = TrainState.fresh(self.device)
        self.state.lr_plan = [{"from_epoch": 0.0, "epochs": self.train_spec.epochs}]
        self.history: list[dict[str, Any]] = []  # metrics.jsonl's records
        self._clock = (time.perf_counter(), 0.0)  # (started, wall seconds before): set by fit()
        if session.resumed:
            self._resume()

    def _build_model(self) -> SpecModule:
        model: SpecModule | None = self.session.model  # built (seed set) while setup checked the run
        self.session.model = None
        if model is None:
            torch.manual_seed(self.train_spec.seed)  # the same initial weights on every rank
            # A resumed run continues from its own weights: model.weights was read when it started.
            model = build(self.session.graph, pretrained=not self.session.resumed)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.strategy.prepare_model(model, self.train_spec, self.reporter)
        return model

    def _frozen_backbones(self) -> list[nn.Module]:
        """The layers that do not train (a torchvision backbone with freeze: true) until train.unfreeze."""
        check_unfreeze(self.session.spec, self.session.graph)  # setup checked it before writing; other ranks here
        return [self.model.layer(n.id) for n in frozen_nodes(self.session.graph)]

    # --- the loop -------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train to train.epochs (or early stopping), test the best weights, write result.json."""
        state, epochs = self.state, self.train_spec.epochs
        self._clock = (time.perf_counter(), state.wall_seconds)  # the run's wall time continues from the state's
        try:
            self.callbacks.on_train_start(self._train_start())
            while state.epoch < epochs and not state.stopped_early:
                epoch = state.epoch + 1
                lr = self._train_epoch(epoch)
                self._end_epoch(epoch, lr)
                stop = self.strategy.agree_to_stop(self.stop.requested)
                if stop and state.epoch < epochs and not state.stopped_early:
                    self.reporter.message(
                        f"interrupted after epoch {state.epoch}; state saved in {self.paths.checkpoints}"
                    )
                    raise TrainingInterrupted(self.paths.root)
            self._tick()
            result = self._finish()
            self.callbacks.on_train_end(result)
            return result
        except RuntimeError as exc:  # torch reports a dead DataLoader worker wherever the main process is
            failure = worker_failure(exc)
            if failure is None:
                raise
            raise failure from None
        finally:
            self.reporter.close()

    def _train_epoch(self, epoch: int) -> float:
        """The epoch's optimizer steps (from the saved one on a resume); returns the last learning rate."""
        state, tally = self.state, self.state.tally
        self._set_frozen(epoch)
        self.model.train()
        forward = self.strategy.training_forward(self.model, self.train_spec.compile)
        order = self.strategy.epoch_indices(
            self.train_source, self.train_spec.seed, epoch, self.steps_per_epoch * self.batch_size
        )
        self.callbacks.on_epoch_start(epoch, tally.batches)
        batches = self.train_source.batches(order, self.batch_size, self.device, start=tally.batches)
        first_bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)  # first non-finite loss
        clock = _EpochClock(tally)
        lr = self.schedule.apply(self.optimizer, state.step)
        while (batch := self._next_batch(batches, epoch, clock)) is not None:
            images, labels = batch
            lr = self.schedule.apply(self.optimizer, state.step)
            step = Step(epoch, tally.batches + 1, state.step + 1)
            loss, correct, skipped = self._step(forward, step, images, labels)
            first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), step.step, first_bad_step)
            tally.add(loss, correct, labels.shape[0], skipped)
            state.step += 1
            self.callbacks.on_step_end(step, self.model, loss)
            if tally.batches % self.sync_every == 0 or tally.batches == self.steps_per_epoch:
                self._check_finite(epoch, first_bad_step)
                self._report_progress(epoch, clock)
        clock.stop()
        self._check_finite(epoch, first_bad_step)
        return lr

    def _next_batch(self, batches: Iterator[Batch], epoch: int, clock: _EpochClock) -> Batch | None:
        """The next batch, or None at the end of the epoch. A requested stop saves and raises
        TrainingInterrupted here, between two optimizer steps (processes agree on which)."""
        if self.strategy.should_stop(self.stop.requested, self.state.tally.batches, self.sync_every):
            clock.stop()
            self._interrupt(epoch)
        try:
            return next(batches)
        except StopIteration:
            return None
        except Exception:
            # e.g. DataLoader workers killed by the same Ctrl-C
            if self.stop.requested and self.strategy.can_stop_alone:
                clock.stop()
                self._interrupt(epoch)
            raise

    def _step(
        self, forward: nn.Module, step: Step, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step; returns the loss, the number of correct predictions, and 1 if AMP skipped it."""
        try:
            return self._optimizer_step(forward, step, images, labels)
        except torch.OutOfMemoryError:
            half = max(self.batch_size // 2, 1)
            raise TrainingError(
                f"CUDA ran out of memory at batch size {self.batch_size} (epoch {step.epoch}, step {step.step})",
                hint=f"lower data.batch_size (e.g. --set data.batch_size={half}), "
                "or use mixed precision (--set train.amp=fp16 or bf16)",
            ) from None

    def _optimizer_step(
        self, forward: nn.Module, step: Step, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, target = self.callbacks.on_batch(step, *self.augment(images, labels))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), target, label_smoothing=self.train_spec.label_smoothing)
        self.scaler.scale(loss).backward()
        self.callbacks.on_after_backward(step, self.model)
        if self.train_spec.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.train_spec.grad_clip)
        scale = self.scaler.get_scale()  # 1.0 when the scaler is disabled (no AMP, bf16), read without a sync
        self.scaler.step(self.optimizer)  # a plain optimizer.step() when disabled
        self.scaler.update()
        skipped = int(self.scaler.get_scale() < scale)  # the scale drops exactly when the step was skipped
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.after_step(self.model, step.step)
        hard = target.argmax(dim=1) if target.ndim == 2 else target  # mixup/cutmix: the dominant class
        correct = (logits.detach().argmax(dim=1) == hard).sum()
        return loss.detach(), correct, skipped

    def _report_progress(self, epoch: int, clock: _EpochClock) -> None:
        tally = self.state.tally
        self.callbacks.on_progress(  # distributed: this rank's shard, images/s of all ranks
            Progress(
                epoch,
                tally.batches,
                self.steps_per_epoch,
                float(tally.loss_sum) / tally.seen,
                float(tally.correct) / tally.seen,
                tally.seen * self.strategy.world_size / max(clock.seconds(), 1e-9),
            )
        )

    def _check_finite(self, epoch: int, first_bad_step: torch.Tensor) -> None:
        step = int(first_bad_step)
        done = self.state.epoch
        where = f"the last checkpoint (epoch {done})" if done else "no checkpoint (none was finished)"
        hint = f"kept {where}; lower optimizer.lr, add train.grad_clip, or check the data normalisation"
        if step >= 0:
            raise TrainingError(
                f"the loss became non-finite (NaN or inf) at epoch {epoch}, step {step}; training stopped", hint=hint
            )
        # The loss can stay finite while the weights overflow: batchnorm turns inf activations into zeros.
        if not all_finite(self.model):
            batches, every = self.state.tally.batches, self.sync_every
            at = f"step {batches}" if every == 1 else f"step {batches} (checked every {every})"
            raise TrainingError(
                f"the weights became non-finite (NaN or inf) at epoch {epoch}, {at}; training stopped", hint=hint
            )

    def _set_frozen(self, epoch: int) -> None:
        """Frozen backbones train from train.unfreeze.epoch on, at lr × lr_scale."""
        if not self.backbones:
            return
        unfreeze = self.train_spec.unfreeze
        trainable = unfreeze is not None and epoch >= unfreeze.epoch
        for module in self.backbones:
            for p in module.parameters():
                p.requires_grad_(trainable)
        if trainable and unfreeze is not None and epoch == unfreeze.epoch and self.state.tally.batches == 0:
            self.reporter.message(f"epoch {epoch}: backbone unfrozen, lr × {unfreeze.lr_scale}")
        self._freeze_bn_weights()  # an unfrozen backbone's batchnorm weights stay fixed too

    def _freeze_bn_weights(self) -> None:
        """train.freeze_bn_weight: BatchNorm's gamma keeps its initial value (no gradient, so no step and
        no weight decay either); its bias trains (hlb-CIFAR10 and airbench train it so)."""
        if not self.train_spec.freeze_bn_weight:
            return
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None:
                module.weight.requires_grad_(False)

    def _whiten_convs(self) -> None:
        """conv2d init: whiten sets its filters from the training images (a fresh run only: a resumed one
        has its weights); freeze_weight keeps a conv's weight where it starts."""
        convs = [(n.layer, self.model.layer(n.id)) for n in self.session.graph.nodes if isinstance(n.layer, Conv2d)]
        whiten = [m for layer, m in convs if layer.init == "whiten"]
        if whiten and not self.session.resumed:
            init_whitening(self.model, whiten, self.train_source, self.augment.normalize, self.device)  # type: ignore[arg-type]
        for layer, module in convs:
            if layer.freeze_weight:
                module.weight.requires_grad_(False)  # type: ignore[union-attr,operator]

    @property
    def eval_model(self) -> nn.Module:
        """The weights that validate, test and are saved for export: the EMA's under train.ema."""
        return self.ema.module if self.ema is not None else self.model

    # --- after each epoch ---------------------------------------------------------------

    def _end_epoch(self, epoch: int, lr: float) -> None:
        """Record the epoch (all processes' sums), validate, track the best epoch, write the checkpoints."""
        state, tally = self.state, self.state.tally
        loss_sum, correct, seen = self.strategy.sum([tally.loss_sum, tally.correct, tally.seen])
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": None,
            "val_accuracy": None,
            "images_per_second": seen / max(tally.seconds, 1e-9),
            "seconds": tally.seconds,
            "skipped_steps": tally.skipped,  # a skipped step is skipped on every rank: not summed
        }
        if self.val_source is not None:
            val = self.strategy.evaluate(self._evaluate, self.val_source)
            record["val_loss"], record["val_accuracy"] = val.loss, val.accuracy
        state.skipped_total += tally.skipped
        state.epoch = epoch
        state.tally = EpochTally.zeros(self.device)
        self.history.append(record)
        self._tick()
        improved = self.best_rule.update(state, record)
        if state.stopped_early:
            self.reporter.message(
                f"early stopping: {self.best_rule.metric} has not improved for {state.bad_epochs} epochs "
                f"(best {state.best:.4f} at epoch {state.best_epoch})"
            )
        if not all_finite(self.model):
            kept = f"the checkpoint of epoch {epoch - 1}" if epoch > 1 else "no checkpoint (none was finished)"
            raise TrainingError(
                f"the weights hold NaN or inf after epoch {epoch}; training stopped",
                hint=f"kept {kept}; lower optimizer.lr or add train.grad_clip",
            )
        # metrics.jsonl before the state: a kill between the two leaves a line that resume drops
        # (it keeps the epochs up to the state's), never a saved epoch whose line is lost.
        if self.strategy.is_main:
            write_metrics(self.paths, self.history)
            if improved:
                self.checkpoints.save_best(self.eval_model, epoch)
        self._save()
        self.callbacks.on_epoch_end(record)

    def _evaluate(self, source: Source, *, test: bool = False) -> EvalResult:
        """Validation (`test` False) or the final test, which evaluate.tta applies to."""
        evaluate = self.session.spec.evaluate
        return evaluate_model(
            self.strategy.evaluation_forward(self.eval_model, self.train_spec.compile),
            source,
            self.augment.normalize,
            batch_size=self.eval_batch_size,
            precision=self.precision,
            channels_last=self.channels_last,
            tta=evaluate.tta if test else (),
            tta_pixels=evaluate.translate_pixels,
        )

    def _tick(self) -> None:
        """Bring the run's total wall time (over all resumes) up to now."""
        started, before = self._clock
        self.state.wall_seconds = before + time.perf_counter() - started

    # --- checkpoints ----------------------------------------------------------------------

    def _save(self) -> None:
        """last.safetensors and last.state.pt; every process takes part (sums, RNG states), the main one writes."""
        tally, rng_ranks = self.strategy.checkpoint_tally(self.state.tally)
        if self.strategy.is_main:
            saved = replace(self.state, tally=tally)
            self.checkpoints.save_last(
                self.model,
                self.optimizer,
                self.scaler,
                saved,
                self.strategy.world_size,
                rng_ranks,
                self.batch_size,
                ema=self.ema,
            )

    def _interrupt(self, epoch: int) -> None:
        """Save a mid-epoch state (weights are finite: checked here) and stop with KeyboardInterrupt."""
        if all_finite(self.model):
            self._tick()
            self._save()
            where = f"epoch {epoch}, step {self.state.tally.batches} of {self.steps_per_epoch}"
            self.reporter.message(f"interrupted at {where}; state saved in {self.paths.checkpoints}")
        raise TrainingInterrupted(self.paths.root)

    def _resume(self) -> None:
        verified, self.session.resume_state = self.session.resume_state, None  # read by setup, before any write
        stored = self.strategy.share(lambda: verified if verified is not None else self.checkpoints.read())
        self.model.load_state_dict(stored["model"])
        # load_state_dict brings back the saved groups' settings too; the spec's (weight decay, momentum,
        # betas: changes a resume may make, docs/training.md) apply from the resume on.
        settings = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(stored["optimizer"])
        for group, setting in zip(self.optimizer.param_groups, settings, strict=True):
            group.update(setting)
        self.scaler.load_state_dict(stored["scaler"])
        if self.ema is not None:
            if "ema" in stored:
                self.ema.load_state_dict(stored["ema"])
            else:  # trained without train.ema until now: the average starts from the resumed weights
                self.ema = WeightEma(self.model, self.train_spec.ema)  # type: ignore[arg-type]
                self.reporter.message("train.ema is new to this run: the average starts from the resumed weights")
        self.strategy.restore_rng(stored, self.train_spec.seed)
        self.state = state = TrainState.from_dict(stored, self.device)
        self._restate_progress(stored)
        self._plan_schedule()
        state.tally = self.strategy.own_tally(state.tally)
        self.history = list(self.session.history)  # checked by setup (rank 0, which alone writes the log)
        if state.stopped_early and not self.best_rule.stops(state.bad_epochs) and state.epoch < self.train_spec.epochs:
            # setup refused the resume if the rule would still stop the run; it no longer does
            state.stopped_early = False
            patience = "off" if self.best_rule.patience is None else f"patience {self.best_rule.patience}"
            self.reporter.message(
                f"{self.paths.root} stopped early after epoch {state.epoch}; early stopping now {patience}, "
                f"{state.bad_epochs} epochs without an improvement so far: training on"
            )
        at = (
            f"epoch {state.epoch + 1}, step {state.tally.batches + 1}"
            if state.tally.batches
            else f"epoch {state.epoch + 1}"
        )
        if state.epoch < self.train_spec.epochs and not state.stopped_early:
            self.reporter.message(f"resuming {self.paths.root} at {at} (step {state.step} overall)")

    def _restate_progress(self, stored: dict[str, Any]) -> None:
        """Count a resumed run's progress in this run's steps: the same images, whatever the batch size
        or the number of processes was when the state was saved.

        Steps of all ranks together read a prefix of the epoch's order (see shard_epoch), so an
        interrupted epoch continues after the images it had seen (`batches` steps of the saved
        batch × processes), rounded down to a whole step of this run's; the step count (which the
        learning-rate schedule reads) is the completed epochs at this run's steps per epoch plus those.
        """
        state, world, batch = self.state, self.strategy.world_size, self.batch_size
        saved_world = int(stored.get("world_size", 1))
        saved_batch = int(stored.get("batch_size", batch))  # states written before cnnspec recorded it: this run's
        seen = state.tally.batches * saved_batch * saved_world
        batches = min(seen // (batch * world), self.steps_per_epoch)
        state.tally.batches = batches
        state.step = state.epoch * self.steps_per_epoch + batches
        if saved_world != world:
            self.reporter.message(
                f"the checkpoint was written by {saved_world} process(es), this run has {world}: "
                f"{self.steps_per_epoch} steps per epoch from now on"
            )
        if saved_batch != batch:
            again = seen - batches * batch * world if batches < self.steps_per_epoch else 0
            where = (
                f"; epoch {state.epoch + 1} continues after {batches * batch * world} of its {seen} images seen"
                + (f" ({again} of them are read again)" if again else "")
                if seen
                else ""
            )
            self.reporter.message(
                f"the checkpoint was saved at data.batch_size {saved_batch}, this run uses {batch}: "
                f"{self.steps_per_epoch} steps per epoch from now on{where}"
            )

    def _plan_schedule(self) -> None:
        """Follow the resumed run's learning-rate plan; a resume that changes train.epochs adds a Replan to it,
        so the rate goes on from where it was (schedule.extend: continue) or starts a new cycle (restart)."""
        state, epochs, schedule = self.state, self.train_spec.epochs, self.session.spec.schedule
        plan = _checked_plan(state.lr_plan, self.paths.state) or [{"from_epoch": 0.0, "epochs": epochs}]
        trains = state.epoch < epochs and not state.stopped_early
        changed = int(plan[-1]["epochs"]) != epochs and trains
        if changed:
            before = self._schedule(plan)
            at = state.step / self.steps_per_epoch
            plan = [*plan, {"from_epoch": at, "epochs": epochs, "extend": schedule.extend}]
        state.lr_plan = plan
        self.schedule = self._schedule(plan)
        if changed:
            new, step = self.schedule, state.step
            last = f"{before.lr * before.factor(step - 1):.3g} (step {step})" if step else "the start"
            how = f"goes on from {last}" if schedule.extend == "continue" else f"starts a new cycle after {last}"
            # A finished cosine/onecycle run had reached its curve's end: continuing trains at about that rate.
            ended = schedule.name in ("cosine", "onecycle") and step >= before.total_steps
            low = schedule.extend == "continue" and ended
            self.reporter.message(
                f"train.epochs is {epochs} now, {int(plan[-2]['epochs'])} before: the learning rate {how}: "
                f"{new.lr * new.factor(step):.3g} at the next step, {new.lr * new.factor(new.total_steps - 1):.3g} "
                f"at the last (schedule.extend: {schedule.extend})"
                + ("; --set schedule.extend=restart trains the new epochs from optimizer.lr again" if low else "")
            )

    def _schedule(self, plan: list[dict[str, Any]]) -> Schedule:
        """The schedule of a learning-rate plan (TrainState.lr_plan), in this run's steps."""
        spe = self.steps_per_epoch
        replans = tuple(Replan(round(p["from_epoch"] * spe), int(p["epochs"]), p["extend"]) for p in plan[1:])
        spec = self.session.spec
        return Schedule(spec.schedule, spec.optimizer.lr, spe, int(plan[0]["epochs"]), replans)

    # --- the end --------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        """Test the best weights, write result.json and curves.png (the main process alone, with the
        weights it wrote)."""
        if not self.strategy.is_main:
            return {}
        self.checkpoints.load_best(self.eval_model)
        state = self.state
        result: dict[str, Any] = {
            "test_accuracy": None,
            "test_loss": None,
            "best_epoch": state.best_epoch,
            "best_" + self.best_rule.metric: state.best,
            "epochs": state.epoch,
            "stopped_early": state.stopped_early,
            "wall_seconds": round(state.wall_seconds, 3),
            "device": _device_name(self.device),
            "processes": self.strategy.world_size,
            "amp": self.precision.amp,
            "skipped_steps": state.skipped_total,
            "images_per_second": _mean([m["images_per_second"] for m in self.history]),
            "lr_plan": state.lr_plan,
        }
        if self.session.spec.evaluate.tta:  # the test accuracy averages over these views (docs/training.md)
            result["test_tta"] = list(self.session.spec.evaluate.tta)
        if self.test_source is not None:
            test = self._evaluate(self.test_source, test=True)
            result["test_accuracy"], result["test_loss"] = test.accuracy, test.loss
            self.callbacks.on_test_end(
                TestEnd(test.accuracy, test.loss, test.labels, test.predictions, list(self.session.info.class_names))
            )
        write_json(self.paths, self.paths.result, result)
        if self.history:
            plot_curves(self.history, self.paths)
        return result

    def _train_start(self) -> TrainStart:
        return TrainStart(
            model=self.model,
            optimizer=self.optimizer,
            run=self.paths.root,
            epochs=self.train_spec.epochs,
            steps_per_epoch=self.steps_per_epoch,
            epoch=self.state.epoch,
            step=self.state.step,
            rank=self.strategy.rank,
            world_size=self.strategy.world_size,
            device=self.device,
        )


class _EpochClock:
    """Seconds spent in the epoch's steps, added to what the tally held (a resumed epoch's earlier part)."""

    def __init__(self, tally: EpochTally) -> None:
        self.tally, self.before, self.started = tally, tally.seconds, time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started

    def stop(self) -> None:
        self.tally.seconds = self.seconds()


def _checked_plan(plan: Any, where: Path) -> list[dict[str, Any]] | None:
    """A saved learning-rate plan, refused unless it has the shape TrainState.lr_plan describes."""
    if plan is None:
        return None

    def entry_ok(k: int, p: Any) -> bool:
        if not isinstance(p, dict) or not isinstance(p.get("epochs"), int) or p["epochs"] < 1:
            return False
        at = p.get("from_epoch")
        if not isinstance(at, int | float) or not 0 <= at < p["epochs"] or (k == 0 and at != 0):
            return False
        return k == 0 or p.get("extend") in ("continue", "restart")

    if not isinstance(plan, list) or not plan or not all(entry_ok(k, p) for k, p in enumerate(plan)):
        raise CheckpointError(
            f"{where}: lr_plan is not a learning-rate plan (a list of {{from_epoch, epochs, extend}})",
            hint="the state is damaged; the weights are intact (evaluate and export still work)",
        )
    return list(plan)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
