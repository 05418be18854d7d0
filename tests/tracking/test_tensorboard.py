"""train.loggers: [tensorboard]: event files read back with TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path

import pytest

import cnnspec
from tests.tracking._helpers import Lines, records, result, spec_file, train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

EVERY = 3


def read(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tb")
    lines = Lines()
    out = train(
        spec_file(folder),
        folder / "run",
        "train.loggers=[tensorboard]",
        f"train.log_every_steps={EVERY}",
        reporter=lines,
    )
    assert lines.warnings() == []
    return out


def test_epoch_scalars_are_the_metrics_records(run: Path) -> None:
    events, (record,) = read(run), records(run)
    (val,) = events.Scalars("epoch/val_accuracy")
    assert val.value == pytest.approx(record["val_accuracy"], rel=1e-6)
    (loss,) = events.Scalars("epoch/train_loss")
    assert loss.value == pytest.approx(record["train_loss"], rel=1e-6)
    assert [s.value for s in events.Scalars("epoch/lr")] == [pytest.approx(record["lr"], rel=1e-6)]
    (test,) = events.Scalars("test/accuracy")
    assert test.value == pytest.approx(result(run)["test_accuracy"], rel=1e-6)


def test_step_scalars_every_n_steps(run: Path) -> None:
    events = read(run)
    steps_per_epoch = events.Scalars("epoch/train_loss")[0].step  # epoch figures sit at the epoch's last step
    expected = list(range(EVERY, steps_per_epoch + 1, EVERY))
    assert len(expected) >= 3
    for tag in ("step/train_loss", "step/train_accuracy", "step/lr", "step/images_per_second"):
        assert [s.step for s in events.Scalars(tag)] == expected, tag
    assert all(s.value > 0 for s in events.Scalars("step/images_per_second"))


def test_confusion_matrix_and_curves_are_images(run: Path) -> None:
    events = read(run)
    assert {"test/confusion_matrix", "curves"} <= set(events.Tags()["images"])
    (image,) = events.Images("curves")
    assert image.width > 300 and image.height > 100
    assert image.encoded_image_string.startswith(b"\x89PNG")


def test_hyperparameters_are_in_the_hparams_plugin(run: Path) -> None:
    events = read(run)
    content = events.PluginTagToContent("hparams")
    data = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in content.values()]
    (start,) = [d for d in data if d.WhichOneof("data") == "session_start_info"]
    hparams = start.session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(0.05)
    assert hparams["data.dataset.name"].string_value == "digits"
    assert hparams["train.log_every_steps"].number_value == EVERY
    (figure,) = events.Scalars("hparam/test_accuracy")
    assert figure.value == pytest.approx(result(run)["test_accuracy"], rel=1e-6)


def test_a_fresh_run_in_the_same_folder_replaces_the_earlier_log(tmp_path: Path) -> None:
    spec = spec_file(tmp_path)
    train(spec, tmp_path / "run", "train.loggers=[tensorboard]")
    first = read(tmp_path / "run").Scalars("epoch/val_accuracy")
    out = train(spec, tmp_path / "run", "train.loggers=[tensorboard]", "optimizer.lr=0.01")
    (val,) = read(out).Scalars("epoch/val_accuracy")  # one value: the earlier run's was purged
    assert len(first) == 1
    assert val.value == pytest.approx(records(out)[0]["val_accuracy"], rel=1e-6)


def test_a_resume_goes_on_in_the_same_log(tmp_path: Path) -> None:
    out = train(spec_file(tmp_path), tmp_path / "run", "train.loggers=[tensorboard]")
    cnnspec.train(resume=out, overrides=["train.epochs=2"], progress=False)
    vals = read(out).Scalars("epoch/val_accuracy")
    assert [round(v.value, 6) for v in vals] == [round(r["val_accuracy"], 6) for r in records(out)]
    assert len(vals) == 2 and vals[0].step < vals[1].step


def _linked_out(run: Path, outside: Path) -> None:
    """RUN/tensorboard made a symbolic link to `outside`, a folder of the user's."""
    outside.mkdir(exist_ok=True)
    (outside / "mine.txt").write_text("the user's")
    run.mkdir(exist_ok=True)
    (run / "tensorboard").symlink_to(outside, target_is_directory=True)


def _refused_once(lines: Lines, run: Path) -> None:
    (warning,) = lines.warnings()
    assert warning.startswith("warning: tensorboard logging failed (CheckpointError: ")
    assert f"{run / 'tensorboard'} is a symbolic link to " in warning
    assert warning.endswith("training goes on without it")


def test_a_fresh_run_over_a_linked_tensorboard_folder_gets_no_events(tmp_path: Path) -> None:
    run, outside = tmp_path / "run", tmp_path / "elsewhere"
    spec = spec_file(tmp_path)
    train(spec, run)  # a run there already: a fresh run may go over it
    _linked_out(run, outside)
    lines = Lines()
    train(spec, run, "train.loggers=[tensorboard]", reporter=lines)
    _refused_once(lines, run)
    assert sorted(p.name for p in outside.iterdir()) == ["mine.txt"]  # no event file written through the link
    assert (run / "tensorboard").is_symlink() and (run / "result.json").is_file()  # the run trained


def test_a_resume_into_a_linked_tensorboard_folder_gets_no_events(tmp_path: Path) -> None:
    run, outside = tmp_path / "run", tmp_path / "elsewhere"
    train(spec_file(tmp_path), run, "train.loggers=[tensorboard]")
    moved = tmp_path / "events"
    (run / "tensorboard").rename(moved)
    _linked_out(run, outside)
    lines = Lines()
    cnnspec.train(resume=run, overrides=["train.epochs=2"], progress=lines)
    _refused_once(lines, run)
    assert sorted(p.name for p in outside.iterdir()) == ["mine.txt"]
    assert len(records(run)) == 2
