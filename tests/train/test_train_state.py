"""The run's progress as data: BestEpoch's rule (ties, min_delta, patience), TrainState's round trip, and the
Checkpoints object's state file (format 1's keys) and refusals.

Expected values are written by hand from the rule as docs/training.md states it, never computed by
the code under test.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnspec.errors import CheckpointError
from cnnspec.rundir.info import RunInfo
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import read_weights
from cnnspec.spec.model import EarlyStopping
from cnnspec.training.checkpoint import Checkpoints
from cnnspec.training.state import BestEpoch, EpochTally, TrainState

CPU = torch.device("cpu")


def _epoch(epoch: int, accuracy: float | None, loss: float | None) -> dict[str, object]:
    return {"epoch": epoch, "val_accuracy": accuracy, "val_loss": loss}


def _run(rule: BestEpoch, epochs: list[dict[str, object]]) -> tuple[list[bool], TrainState]:
    state = TrainState()
    return [rule.update(state, record) for record in epochs], state


# --- ties at equal scores ---------------------------------------------------------------------


def test_equal_accuracy_with_a_lower_loss_is_the_new_best() -> None:
    improved, state = _run(BestEpoch(), [_epoch(1, 0.9, 0.50), _epoch(2, 0.9, 0.40)])
    assert improved == [True, True]
    assert (state.best_epoch, state.best, state.best_loss, state.bad_epochs) == (2, 0.9, 0.40, 0)


def test_equal_accuracy_with_an_equal_or_higher_loss_keeps_the_earlier_epoch() -> None:
    improved, state = _run(BestEpoch(), [_epoch(1, 0.9, 0.40), _epoch(2, 0.9, 0.40), _epoch(3, 0.9, 0.45)])
    assert improved == [True, False, False]
    assert (state.best_epoch, state.best_loss, state.bad_epochs) == (1, 0.40, 2)


def test_the_loss_breaks_ties_only_at_exactly_equal_accuracy() -> None:
    """A lower loss does not make up for a lower accuracy, however small the gap."""
    improved, state = _run(BestEpoch(), [_epoch(1, 0.9, 0.50), _epoch(2, 0.9 - 1e-12, 0.01)])
    assert improved == [True, False]
    assert state.best_epoch == 1


def test_the_tie_break_ignores_min_delta() -> None:
    """With min_delta 0.125, an equal accuracy at a lower loss still wins; a gain of exactly 0.125 does not."""
    rule = BestEpoch("val_accuracy", min_delta=0.125)
    improved, state = _run(rule, [_epoch(1, 0.5, 0.50), _epoch(2, 0.5, 0.49), _epoch(3, 0.625, 0.01)])
    assert improved == [True, True, False]
    assert state.best_epoch == 2


def test_val_loss_as_the_metric_has_no_tie_break() -> None:
    rule = BestEpoch("val_loss")
    improved, state = _run(rule, [_epoch(1, 0.5, 0.40), _epoch(2, 0.99, 0.40)])
    assert improved == [True, False]
    assert (state.best_epoch, state.best) == (1, 0.40)


# --- min_delta boundaries ---------------------------------------------------------------------
# Binary fractions (exact in floating point), so "exactly min_delta" is exact.


def test_an_accuracy_gain_of_exactly_min_delta_is_not_an_improvement() -> None:
    rule = BestEpoch("val_accuracy", min_delta=0.125)
    improved, state = _run(rule, [_epoch(1, 0.5, 1.0), _epoch(2, 0.625, 0.5)])
    assert improved == [True, False]
    assert (state.best_epoch, state.bad_epochs) == (1, 1)


def test_an_accuracy_gain_just_over_min_delta_is_an_improvement() -> None:
    rule = BestEpoch("val_accuracy", min_delta=0.125)
    improved, state = _run(rule, [_epoch(1, 0.5, 1.0), _epoch(2, 0.625 + 2**-20, 1.0)])
    assert improved == [True, True]
    assert state.best_epoch == 2


def test_a_loss_drop_of_exactly_min_delta_is_not_an_improvement() -> None:
    rule = BestEpoch("val_loss", min_delta=0.25)
    improved, state = _run(rule, [_epoch(1, None, 1.0), _epoch(2, None, 0.75), _epoch(3, None, 0.75 - 2**-20)])
    assert improved == [True, False, True]
    assert (state.best_epoch, state.best) == (3, 0.75 - 2**-20)


def test_without_min_delta_any_strict_gain_counts() -> None:
    improved, _ = _run(BestEpoch("val_loss"), [_epoch(1, None, 1.0), _epoch(2, None, 1.0 - 2**-40)])
    assert improved == [True, True]


# --- patience and runs without validation --------------------------------------------------------


def test_patience_stops_after_that_many_epochs_without_improvement() -> None:
    rule = BestEpoch("val_accuracy", patience=2)
    improved, state = _run(rule, [_epoch(1, 0.8, 1.0), _epoch(2, 0.7, 1.0)])
    assert improved == [True, False] and not state.stopped_early
    rule.update(state, _epoch(3, 0.8, 1.0))  # equal accuracy, equal loss: not better
    assert state.stopped_early and state.bad_epochs == 2 and state.best_epoch == 1


def test_an_improvement_resets_the_patience_count() -> None:
    rule = BestEpoch("val_accuracy", patience=2)
    _, state = _run(rule, [_epoch(1, 0.8, 1.0), _epoch(2, 0.7, 1.0), _epoch(3, 0.9, 1.0), _epoch(4, 0.7, 1.0)])
    assert (state.bad_epochs, state.best_epoch, state.stopped_early) == (1, 3, False)


def test_without_early_stopping_the_run_never_stops() -> None:
    _, state = _run(BestEpoch(), [_epoch(e, 0.5, 1.0) for e in range(1, 50)])
    assert state.bad_epochs == 48 and not state.stopped_early


def test_without_validation_the_latest_epoch_is_the_best() -> None:
    improved, state = _run(BestEpoch(), [_epoch(1, None, None), _epoch(2, None, None)])
    assert improved == [True, True]
    assert (state.best_epoch, state.best) == (2, None)


def test_the_rule_comes_from_train_early_stopping() -> None:
    assert BestEpoch.from_spec(None) == BestEpoch("val_accuracy", 0.0, None)
    spec = EarlyStopping(metric="val_loss", patience=3, min_delta=0.01)
    assert BestEpoch.from_spec(spec) == BestEpoch("val_loss", 0.01, 3)


# --- TrainState: one field, one key ---------------------------------------------------------------


def test_train_state_saves_every_field_under_its_name_and_reads_it_back() -> None:
    state = TrainState(
        epoch=3,
        step=159,
        tally=EpochTally(7, 168, 1.5, 1, torch.tensor(12.25, dtype=torch.float64), torch.tensor(150)),
        best=0.875,
        best_loss=0.3125,
        best_epoch=2,
        bad_epochs=1,
        stopped_early=True,
        wall_seconds=42.5,
        skipped_total=4,
    )
    stored = state.to_dict()
    # The keys last.state.pt has always had (format 1), written out by hand.
    assert set(stored) == {
        "epoch",
        "step",
        "tally",
        "best",
        "best_loss",
        "best_epoch",
        "bad_epochs",
        "stopped_early",
        "wall_seconds",
        "skipped_total",
    }
    assert stored["tally"] == {
        "batches": 7,
        "seen": 168,
        "seconds": 1.5,
        "skipped": 1,
        "loss_sum": 12.25,
        "correct": 150,
    }
    back = TrainState.from_dict({**stored, "model": {}, "format": 1}, CPU)
    for f in fields(TrainState):
        if f.name != "tally":
            assert getattr(back, f.name) == getattr(state, f.name), f.name
    assert back.tally.to_dict() == stored["tally"]


def test_a_fresh_state_has_no_best_epoch() -> None:
    state = TrainState.fresh(CPU)
    assert (state.epoch, state.step, state.best, state.best_epoch, state.bad_epochs) == (0, 0, None, 0, 0)
    assert state.best_loss == math.inf and not state.stopped_early
    assert (state.tally.batches, float(state.tally.loss_sum), int(state.tally.correct)) == (0, 0.0, 0)


# --- Checkpoints: the state file's layout and its refusals ------------------------------------------

# The keys of last.state.pt as the loop wrote them before TrainState existed (format 1), by hand.
FORMAT_1_KEYS = {
    "format",
    "architecture_hash",
    "spec_hash",
    "epoch",
    "step",
    "world_size",
    "tally",
    "model",
    "optimizer",
    "scaler",
    "rng",
    "best",
    "best_loss",
    "best_epoch",
    "bad_epochs",
    "stopped_early",
    "wall_seconds",
    "skipped_total",
}
# Added since, read with .get (a state without it resumes a run.json without it): the run's id.
ADDED_KEYS = {"run_id"}


def _info(architecture: str) -> RunInfo:
    return RunInfo(
        spec_name="t",
        spec_hash="s" * 64,
        architecture_hash=architecture,
        cnnspec_version="0",
        input_shape=[4, 1, 1],
        class_names=["a", "b"],
    )


def _saved_run(tmp_path: Path, rng_ranks: list[dict[str, torch.Tensor]] | None = None) -> tuple[RunPaths, nn.Linear]:
    paths = RunPaths(tmp_path / "run")
    paths.checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainState(epoch=2, step=10, best=0.5, best_epoch=2)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    Checkpoints(paths, _info("a" * 64)).save_last(model, optimizer, scaler, state, 1, rng_ranks)
    return paths, model


def test_the_state_file_keeps_format_1s_keys_and_values(tmp_path: Path) -> None:
    paths, model = _saved_run(tmp_path)
    stored = Checkpoints(paths, _info("a" * 64)).read()
    assert set(stored) == FORMAT_1_KEYS | ADDED_KEYS
    picked = (stored["format"], stored["epoch"], stored["step"], stored["best"], stored["world_size"])
    assert picked == (1, 2, 10, 0.5, 1)
    assert torch.equal(stored["model"]["weight"], model.weight.detach())
    assert torch.equal(stored["rng"]["cpu"], torch.get_rng_state())
    assert read_weights(paths.weights("last")).keys() == {"weight", "bias"}


def test_a_distributed_state_adds_every_ranks_rng(tmp_path: Path) -> None:
    ranks = [{"cpu": torch.get_rng_state()}, {"cpu": torch.get_rng_state()}]
    paths, _ = _saved_run(tmp_path, ranks)
    stored = Checkpoints(paths, _info("a" * 64)).read()
    assert set(stored) == FORMAT_1_KEYS | ADDED_KEYS | {"rng_ranks"} and len(stored["rng_ranks"]) == 2


def test_a_state_of_another_architecture_is_refused(tmp_path: Path) -> None:
    paths, _ = _saved_run(tmp_path)
    with pytest.raises(CheckpointError, match="belongs to a different architecture"):
        Checkpoints(paths, _info("b" * 64)).read()


def test_a_damaged_best_weights_file_is_refused_when_the_state_is_read(tmp_path: Path) -> None:
    paths, model = _saved_run(tmp_path)
    checkpoints = Checkpoints(paths, _info("a" * 64))
    checkpoints.save_best(model, 2)
    data = bytearray(paths.weights("best").read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor
    paths.weights("best").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        checkpoints.read()


def test_load_best_leaves_the_model_alone_without_a_best_file(tmp_path: Path) -> None:
    paths, model = _saved_run(tmp_path)
    before = model.weight.detach().clone()
    Checkpoints(paths, _info("a" * 64)).load_best(model)
    assert torch.equal(model.weight, before)
    other = nn.Linear(4, 2)
    Checkpoints(paths, _info("a" * 64)).save_best(model, 2)
    Checkpoints(paths, _info("a" * 64)).load_best(other)
    assert torch.equal(other.weight, model.weight)
