"""What a run directory says must be what its weights are (issue 14, items 9 and 10), and a refused
`train` writes nothing (item 4); `evaluate` checks only what evaluating needs (item 3).

Every run here is a real, tiny training run (synthetic or digits data, 1-6 epochs, CPU); commands
go through the CLI in-process (`cli`, whose result keeps any escaped exception: a traceback).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

import cnnspec
from cnnspec.rundir.paths import LOCK_NAME, RunPaths
from cnnspec.rundir.weights import load_state
from cnnspec.training.callbacks import Callback, Step
from cnnspec.training.datasets import load_data
from cnnspec.training.progress import Reporter
from cnnspec.training.signals import TrainingInterrupted
from cnnspec.training.sources import TensorSource, epoch_order
from tests.reliability._reliability_helpers import TINY, assert_refused, cli, report
from tests.train._train_helpers import DIGITS_FAST


def _files(root: Path) -> dict[str, bytes | None]:
    """Every file of the folder and its bytes (the lock file by name only: each writer records itself in it)."""
    return {
        str(p.relative_to(root)): None if p.name == LOCK_NAME else p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class Messages(Reporter):
    """The loop's messages, kept (no progress display)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


# --- item 9: spec.yaml and run.json must still describe the weights -------------------------------


def test_evaluate_export_and_bench_refuse_a_spec_yaml_whose_network_was_edited(
    copy_run: Callable[[str], Path],
) -> None:
    run = copy_run("run")
    spec = RunPaths(run).spec
    text = spec.read_text(encoding="utf-8")
    assert text.count("    - relu\n") == 1
    # The same tensors (relu and sigmoid hold none), another network: the weights would load and
    # answer wrongly (evaluate gave 0.18 on such an edit, exit 0).
    spec.write_text(text.replace("    - relu\n", "    - sigmoid\n"), encoding="utf-8")
    refusal = "does not describe the network this run's weights were trained as"
    commands: list[list[str | Path]] = [["evaluate", run], ["export", run], ["bench", run, "--seconds", "0"]]
    for command in commands:
        assert_refused(cli(*command), refusal, "architecture_hash")
    assert not (run / "evaluation.json").exists() and not (run / "model.onnx").exists()
    # An edit outside model: (how it trains) is not the network: evaluate still reads the run.
    spec.write_text(text.replace("lr: 0.05", "lr: 0.01"), encoding="utf-8")
    assert cli("evaluate", run).code == 0
    report("records spec.yaml edited", commands_refused=3)


# run.json edits, each with the line the refusal must give: the field, what is wrong, the value found.
BAD_RECORDS = [
    ({"std": [0.0]}, "std[0]: input should be greater than or equal to 0.001, got 0.0"),
    ({"std": [-0.25]}, "std[0]: input should be greater than or equal to 0.001, got -0.25"),
    ({"std": [float("nan")]}, "std[0]: input should be a finite number, got nan"),
    ({"mean": [float("inf")]}, "mean[0]: input should be a finite number, got inf"),
    ({"mean": [0.1, 0.2], "std": [0.3, 0.3]}, "mean has 2 values but input_shape has 1 channel"),
    ({"std": ["0.2"]}, 'std[0]: input should be a valid number, got "0.2"'),
    ({"mean": 0.5}, "mean: input should be a valid array, got 0.5"),
    ({"std": None}, "mean is given but std is not"),
    ({"input_shape": [1, 8]}, "input_shape: list should have at least 3 items"),
    ({"input_shape": [1, 0, 8]}, "input_shape[1]: input should be greater than 0, got 0"),
    ({"class_names": []}, "class_names: list should have at least 1 item"),
    ({"class_names": [0, 1, 2, 3]}, "class_names[0]: input should be a valid string, got 0"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_RECORDS, ids=[m.split(":")[0] for _, m in BAD_RECORDS])
def test_a_hand_edited_run_json_is_refused_naming_the_field(
    copy_run: Callable[[str], Path], edit: dict[str, object], message: str
) -> None:
    run = copy_run("run")
    info = RunPaths(run).info
    record = json.loads(info.read_text(encoding="utf-8"))
    assert record["mean"] is not None and len(record["mean"]) == 1  # TINY: one channel, normalize auto
    info.write_text(json.dumps({**record, **edit}), encoding="utf-8")  # NaN and inf as JSON's NaN, Infinity
    before = _files(run)
    commands: list[list[str | Path]] = [
        ["evaluate", run],
        ["export", run],
        ["train", "--resume", run, "--set", "train.epochs=3"],
    ]
    for command in commands:
        assert_refused(cli(*command), f"{info}: error: {message}", "put back the original")
    assert _files(run) == before  # no evaluation.json with a NaN accuracy, no model.onnx, nothing resumed


# --- item 10: resume -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stopped_early(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits run of 6 epochs that early stopping ended after epoch 2 (nothing improves by 0.5)."""
    folder = tmp_path_factory.mktemp("early")
    spec = folder / "digits.yaml"
    spec.write_text(DIGITS_FAST, encoding="utf-8")
    overrides = [
        "train.epochs=6",
        "optimizer.lr=1e-6",
        "train.early_stopping={metric: val_accuracy, patience: 1, min_delta: 0.5}",
    ]
    run = cnnspec.train(spec, out=folder / "run", overrides=overrides, progress=False)
    result = json.loads((run / "result.json").read_text())
    assert (result["epochs"], result["stopped_early"]) == (2, True)
    return run


def _copy(run: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(run, target)
    return target


def test_an_early_stopped_run_is_not_resumed_into_nothing(stopped_early: Path, tmp_path: Path) -> None:
    run = _copy(stopped_early, tmp_path / "run")
    before = _files(run)
    # More epochs under the same rule would stop again before a step: refused with how to go on.
    for extra in ([], ["--set", "train.epochs=20"]):
        assert_refused(
            cli("train", "--resume", run, *extra),
            "it stopped early after epoch 2",
            "--set train.early_stopping.patience=2",
            "--set train.early_stopping=null",
        )
    assert _files(run) == before
    # A patience the run has not used up trains on; the count goes on from 1: epochs 3 and 4, then stop.
    messages = Messages()
    cnnspec.train(resume=run, overrides=["train.early_stopping.patience=3"], progress=messages)
    result = json.loads((run / "result.json").read_text())
    assert (result["epochs"], result["stopped_early"], result["best_epoch"]) == (4, True, 1)
    assert [json.loads(line)["epoch"] for line in RunPaths(run).metrics.read_text().splitlines()] == [1, 2, 3, 4]
    assert any("stopped early after epoch 2; early stopping now patience 3" in m for m in messages.lines)
    # Early stopping off: trains to train.epochs.
    off = _copy(stopped_early, tmp_path / "off")
    cnnspec.train(resume=off, overrides=["train.early_stopping=null"], progress=False)
    assert json.loads((off / "result.json").read_text())["epochs"] == 6


@pytest.mark.parametrize("state", ["records its metric", "written before the metric was recorded"])
def test_a_resume_that_changes_the_early_stopping_metric_rescores_the_kept_best_epoch(
    stopped_early: Path, tmp_path: Path, state: str
) -> None:
    from safetensors import safe_open

    from cnnspec.rundir.weights import save_state

    run = _copy(stopped_early, tmp_path / "run")
    paths = RunPaths(run)
    if state != "records its metric":  # the metric then comes from the run's spec.yaml (val_accuracy)
        saved = load_state(paths.state)
        assert saved.pop("metric") == "val_accuracy"
        save_state(paths.state, saved)
    messages = Messages()
    cnnspec.train(resume=run, overrides=["train.early_stopping={metric: val_loss, patience: 2}"], progress=messages)
    result = json.loads(paths.result.read_text())
    records = {r["epoch"]: r for r in map(json.loads, paths.metrics.read_text().splitlines())}
    assert result["epochs"] > 2  # the count of epochs without an improvement started again
    # result.json's best value is the val_loss of the epoch it names, whose weights best.safetensors holds
    # (was epoch 1's val_accuracy, compared with every later val_loss and recorded as best_val_loss).
    assert result["best_val_loss"] == records[result["best_epoch"]]["val_loss"]
    with safe_open(str(paths.weights("best")), framework="pt") as f:
        assert int(f.metadata()["epoch"]) == result["best_epoch"]
    assert load_state(paths.state)["metric"] == "val_loss"
    note = "train.early_stopping watches val_loss now, val_accuracy before: the best weights so far (epoch 1)"
    assert any(m.startswith(note) for m in messages.lines), messages.lines


# Digits without augmentation, batches of 16 (80 steps an epoch): the labels a step trains on show
# which images of the epoch's order it read.
PLAIN = DIGITS_FAST.replace("  augment:\n    - random_crop: {size: 8, padding: 1}\n", "").replace(
    "batch_size: 64", "batch_size: 16"
)
STOP_AFTER = 6  # steps of epoch 1: 96 images seen


class InterruptAt(Reporter):
    """Sends this process a real SIGINT (as Ctrl-C does) after step `step` of epoch 1."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.epoch = 0

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        self.epoch = epoch

    def update(self, step: int, loss: float, accuracy: float, images_per_second: float) -> None:
        if (self.epoch, step) == (1, self.step):
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch digits run stopped by Ctrl-C after step 6 of its first epoch (no best weights yet)."""
    folder = tmp_path_factory.mktemp("interrupted")
    spec = folder / "plain.yaml"
    spec.write_text(PLAIN.replace("epochs: 2", "epochs: 1"), encoding="utf-8")
    with pytest.raises(TrainingInterrupted):
        cnnspec.train(spec, out=folder / "run", progress=InterruptAt(STOP_AFTER))
    state = load_state(RunPaths(folder / "run").state)
    assert (state["epoch"], state["tally"]["batches"], state["batch_size"]) == (0, STOP_AFTER, 16)
    assert not RunPaths(folder / "run").weights("best").exists()
    return folder / "run"


class Labels(Callback):
    """The labels of every training step of epoch 1, in order."""

    def __init__(self) -> None:
        self.labels: list[torch.Tensor] = []

    def on_batch(self, step: Step, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if step.epoch == 1:
            self.labels.append(targets.cpu())
        return images, targets


@pytest.mark.parametrize(("batch", "after", "again"), [(32, 96, 0), (40, 80, 16)])
def test_a_mid_epoch_resume_with_another_batch_size_continues_after_the_images_seen(
    interrupted: Path, tmp_path: Path, batch: int, after: int, again: int
) -> None:
    run = _copy(interrupted, tmp_path / "run")
    labels, messages = Labels(), Messages()
    cnnspec.train(resume=run, overrides=[f"data.batch_size={batch}"], progress=messages, callbacks=[labels])
    # The oracle: the epoch's order is a function of (seed, epoch), the labels come from the dataset.
    spec = cnnspec.load(RunPaths(run).spec)
    train = load_data(spec).train
    assert isinstance(train, TensorSource)
    order = epoch_order(len(train), spec.train.seed, 1)
    end = len(train) // batch * batch  # the epoch's last partial batch is dropped
    # 96 images = 3 batches of 32: steps 4… read order[96:]; 96 = 2 batches of 40 + 16: those 16 again.
    assert torch.equal(torch.cat(labels.labels), train.labels[order[after:end]])
    line = next(m for m in messages.lines if "data.batch_size 16, this run uses" in m)
    assert f"continues after {after} of its 96 images seen" in line
    assert (f"({again} of them are read again)" in line) == bool(again)
    assert load_state(RunPaths(run).state)["step"] == len(train) // batch  # the schedule's count, in new steps


def test_evaluate_best_records_the_last_weights_it_used_when_there_is_no_best(
    interrupted: Path, tmp_path: Path
) -> None:
    run = _copy(interrupted, tmp_path / "run")
    result = cli("evaluate", run)
    assert result.code == 0 and result.exception is None, result.output
    assert f"note: {run} has no best.safetensors (it stopped inside its first epoch): evaluated its last weights" in (
        " ".join(result.stdout.split())
    )
    best = json.loads((run / "evaluation.json").read_text())
    assert best["weights"] == "last"  # was "best", for the last weights
    assert cli("evaluate", run, "--weights", "last").code == 0
    last = json.loads((run / "evaluation.json").read_text())
    assert (last["weights"], last["accuracy"], last["loss"]) == ("last", best["accuracy"], best["loss"])
    exported = cli("export", run)
    assert exported.code == 0 and "exported its last weights" in exported.output, exported.output


def test_a_resume_that_trains_removes_the_runs_stale_export_and_evaluation(copy_run: Callable[[str], Path]) -> None:
    run = copy_run("run")
    assert cli("export", run).code == 0 and cli("evaluate", run).code == 0
    onnx = RunPaths(run).onnx
    evaluation = [run / "evaluation.json", run / "confusion_matrix.png"]
    assert all(p.is_file() for p in evaluation)
    (run / "notes.txt").write_text("the user's own file\n", encoding="utf-8")
    # Resuming a finished run trains nothing: the export still matches the weights and stays.
    assert cli("train", "--resume", run).code == 0 and onnx.is_file()
    assert all(p.is_file() for p in evaluation)
    messages = Messages()
    cnnspec.train(resume=run, overrides=["train.epochs=3"], progress=messages)
    assert not onnx.exists()  # was kept: predict answered with the weights of epoch 2
    removed = f"removed {onnx}: it was exported from the weights before this resume"
    assert any(m.startswith(removed) for m in messages.lines), messages.lines
    # evaluation.json and its confusion matrix were kept, reporting epoch 2's weights as the run's.
    assert not any(p.exists() for p in evaluation)
    shown = " and ".join(map(str, evaluation))
    removed = f"removed {shown}: they were measured on the weights before this resume; run `cnnspec evaluate` again"
    assert any(m.startswith(removed) for m in messages.lines), messages.lines
    assert (run / "notes.txt").read_text(encoding="utf-8") == "the user's own file\n"  # not cnnspec's: left


# Lines of metrics.jsonl that are not epoch records, each with the reason a resume gives for leaving it out.
NOT_RECORDS: list[tuple[bytes, str]] = [
    (b"[1, 2]", "not a JSON object"),
    (b"5", "not a JSON object"),
    (b"null", "not a JSON object"),
    (b'{"epoch": "two", "train_loss": "x"}', "epoch: input should be a valid integer"),
    (b'{"epoch": 2}', "lr: field required"),  # the keys are checked before a step (was: a KeyError after epoch 3)
    (b"[" * 10_000, "recursion limit exceeded"),
    (b"[" * 100_000, "100,000 bytes, longer than any epoch record"),
    (b"garbage{", "invalid JSON"),
    (b"\xff\xfe not UTF-8", "invalid JSON"),
    (
        b'{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": null, "val_accuracy": null, '
        b'"images_per_second": 1.0, "seconds": 1.0}',
        "repeats epoch 1",
    ),
]


def _damage_log(run: Path) -> list[bytes]:
    """Replace epoch 2's line of the run's metrics.jsonl with the NOT_RECORDS lines; returns the original lines."""
    metrics = RunPaths(run).metrics
    lines = metrics.read_bytes().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    metrics.write_bytes(b"\n".join([lines[0], *(line for line, _ in NOT_RECORDS)]) + b"\n")
    return lines


def test_every_line_of_metrics_jsonl_is_checked_as_an_epoch_record(copy_run: Callable[[str], Path]) -> None:
    from cnnspec.training.records import read_metrics

    run = copy_run("run")
    original = _damage_log(run)
    log = read_metrics(RunPaths(run), 2)
    assert log.records == [json.loads(original[0]) | {"skipped_steps": 0}]
    assert log.missing == [2]
    assert len(log.damaged) == len(NOT_RECORDS)
    for number, (described, (_, reason)) in enumerate(zip(log.damaged, NOT_RECORDS, strict=True), 2):
        assert described.startswith(f"line {number}: ") and reason in described, (described, reason)


def test_a_resume_past_lines_that_are_not_records_trains_from_the_checkpoint_and_rewrites_the_log(
    copy_run: Callable[[str], Path],
) -> None:
    metrics: list[list[int]] = []
    # A finished run (nothing to train: the best weights are tested again) and one resumed for an epoch more.
    for name, extra in (("finished", []), ("more", ["--set", "train.epochs=3"])):
        run = copy_run(name)
        _damage_log(run)
        result = cli("train", "--resume", run, *extra)
        assert result.code == 0 and result.exception is None, result.output  # was a TypeError, KeyError, …
        text = " ".join(result.output.split())
        assert f"left out {len(NOT_RECORDS)} lines that are not epoch records (line 2: not a JSON object;" in text
        assert "no record of epoch 2; the checkpoint is intact: resuming from it, with the log rewritten" in text
        lines = RunPaths(run).metrics.read_text(encoding="utf-8").splitlines()
        metrics.append([json.loads(line)["epoch"] for line in lines])
        assert json.loads((run / "result.json").read_text())["epochs"] == (2 if name == "finished" else 3)
    assert metrics == [[1], [1, 3]]  # only records, each epoch once (was 1, 1, 3 after the missing-keys line)
    report("records damaged metrics.jsonl", lines=len(NOT_RECORDS), resumes=2, tracebacks=0)


# --- item 3: evaluate checks what it evaluates -------------------------------------------------------


def test_evaluate_checks_the_memory_evaluating_needs_not_trainings(copy_run: Callable[[str], Path]) -> None:
    run = copy_run("run")
    spec = RunPaths(run).spec
    text = spec.read_text(encoding="utf-8")
    # A training batch no machine holds (a hand edit, or a run trained on a bigger machine) with
    # evaluation batches of 64: training would be refused, evaluating is a few KiB.
    spec.write_text(text.replace("  batch_size: 16\n", "  batch_size: 100000000000\n  eval_batch_size: 64\n"))
    assert_refused(cli("train", "--resume", run, "--set", "train.epochs=3"), "training needs an estimated")
    result = cli("evaluate", run)
    assert result.code == 0 and result.exception is None, result.output  # was "training needs an estimated …"
    # Evaluating's own estimate does refuse what it cannot hold, before loading anything.
    spec.write_text(text.replace("  batch_size: 16\n", "  batch_size: 16\n  eval_batch_size: 100000000000\n"))
    assert_refused(cli("evaluate", run), "evaluating needs an estimated", "most of it is activations")


# --- item 4: a refused train writes nothing ----------------------------------------------------------


def _spec(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _refusals(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Specs `train` refuses, each with a phrase of its error."""
    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / "train" / label).mkdir(parents=True)
        Image.new("L", (8, 8), 128).save(folder / "train" / label / "ok.png")
    (folder / "train" / "b" / "bad.png").write_bytes(b"not a png")
    wrong = tmp_path / "wrong.pth"
    torch.save({"not.a.key": torch.zeros(1)}, wrong)
    image_folder = (
        TINY.replace("linear: {out_features: 4}", "linear: {out_features: 2}")
        .replace("{name: synthetic, num_samples: 64, num_classes: 4}", f"{{name: image_folder, root: '{folder}'}}")
        .replace("  batch_size: 16\n", "  batch_size: 2\n  resize: 8\n")
    )
    return {
        "memory": (TINY.replace("  batch_size: 16\n", "  batch_size: 100000000000\n"), "training needs an estimated"),
        "image header": (image_folder, "bad.png: cannot read this image"),
        "classes": (TINY.replace("out_features: 4", "out_features: 5"), "the model outputs 5 class scores"),
        "unfreeze": (
            TINY.replace("seed: 5}", "seed: 5, unfreeze: {epoch: 2, lr_scale: 0.1}}"),
            "train.unfreeze is set but no torchvision layer has freeze: true",
        ),
        "model.weights": (
            TINY.replace("  layers:\n", f"  weights: '{wrong}'\n  layers:\n", 1),
            "does not fit the model",
        ),
    }


def test_a_refused_train_leaves_no_run_folder(tmp_path: Path) -> None:
    refusals = _refusals(tmp_path)
    for name, (text, message) in refusals.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        assert_refused(cli("train", _spec(tmp_path, name.replace(" ", "-"), text), "--out", out), message)
        assert not out.exists(), f"{name}: {sorted(p.name for p in out.rglob('*'))}"  # was .cnnspec.lock (and more)
    report("records refused train", refusals=len(refusals), folders_left=0)


def test_a_refused_train_leaves_an_existing_run_as_it_was(copy_run: Callable[[str], Path], tmp_path: Path) -> None:
    run = copy_run("run")
    before = _files(run)
    for name, (text, message) in _refusals(tmp_path).items():
        assert_refused(cli("train", _spec(tmp_path, name.replace(" ", "-"), text), "--out", run), message)
        assert _files(run) == before, name  # the old run neither replaced nor touched
