"""The public entry points: `train` a spec into a run directory, `evaluate_run` a trained one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnspec.spec.model import Spec
from cnnspec.training.callbacks import Callback, checked
from cnnspec.training.progress import Reporter
from cnnspec.training.signals import StopFlag


def train(
    spec_or_path: Spec | str | Path | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    progress: bool | Reporter | None = None,
    callbacks: Sequence[Callback] = (),
    stop: StopFlag | None = None,
) -> Path:
    """Train a spec and return its run directory.

    `out` defaults to runs/<spec name>; an earlier run there is replaced (only the files it wrote:
    anything else in the folder stays), a folder that is not a cnnspec run is refused, and the
    folder is locked while this process writes it (a second writer is refused). `resume` continues
    the run in that directory from its last checkpoint (with `spec_or_path` None, its own
    spec.yaml); `overrides` are `KEY=VALUE` strings validated like the file. `progress`: None
    draws a bar on a terminal and plain lines elsewhere, False is silent, a
    `cnnspec.training.progress.Reporter` receives every update. `callbacks` are
    `cnnspec.training.callbacks.Callback` instances whose hooks the loop calls (batches after
    augmentation, gradients, steps, epochs), on every rank under torchrun; the loggers the spec's
    `train.loggers` names are added after them, on rank 0 alone (docs/tracking.md).

    Ctrl-C (or SIGTERM) saves the state at the next step boundary and raises
    `cnnspec.training.signals.TrainingInterrupted` (a KeyboardInterrupt) naming the run. `stop`: the
    flag the signals set (default a new one); a caller reads it afterwards to tell a run that finished
    anyway (the signal came after its last step) from one nobody stopped (`cnnspec sweep` does).

    Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK set, WORLD_SIZE > 1) every process calls this
    and they train one model with DistributedDataParallel; rank 0 alone reports and writes
    (docs/distributed.md).
    """
    from cnnspec.tracking.loggers import FAILED, KILLED, end_all, loggers_for
    from cnnspec.training.distributed import from_env, prepare_shared, process_group
    from cnnspec.training.loop import Trainer
    from cnnspec.training.progress import make_reporter
    from cnnspec.training.setup import read_spec_file
    from cnnspec.training.signals import stop_on_signals

    callbacks = checked(callbacks)  # before anything is written
    # Read once, and before a signal only sets the stop flag: Ctrl-C or SIGTERM ends a wait on a pipe.
    spec_or_text = read_spec_file(spec_or_path)
    dist = from_env()
    reporter = make_reporter(progress if dist.is_main else False)
    stop = stop if stop is not None else StopFlag()
    stop.on_request = lambda: reporter.message("stopping after this step to save the state (Ctrl-C again to abort)")
    with stop_on_signals(stop), process_group(dist):
        session = prepare_shared(dist, spec_or_text, out, resume, overrides, reporter)
        # train.loggers: the main process alone logs; a logger's failure is one warning, never the run's end.
        loggers = loggers_for(session.spec, session.paths.root, reporter.message) if dist.is_main else []
        try:
            Trainer(session, reporter, stop, dist, [*callbacks, *loggers]).fit()
        except BaseException as exc:
            end_all(loggers, KILLED if isinstance(exc, KeyboardInterrupt) else FAILED)
            raise
        finally:
            session.release()
    return session.paths.root


def evaluate_run(run: str | Path, *, which: str = "best", split: str = "test") -> dict[str, Any]:
    """Evaluate a run's weights on its test (or val) split; writes evaluation.json and confusion_matrix.png.

    `which` "best" gives the last weights when the run has none marked best yet (it stopped inside its
    first epoch); the report's "weights" says which were evaluated. The run is locked while it is
    evaluated: a run that a `train` is writing is refused (its weights are still changing), naming it.
    """
    from cnnspec.rundir.files import ensure_own_files
    from cnnspec.rundir.info import read_info
    from cnnspec.rundir.lock import locked
    from cnnspec.rundir.paths import RunPaths

    paths = RunPaths(Path(run))
    read_info(run)  # a folder that is not a run is refused before its lock file is made
    ensure_own_files(paths.root, [paths.evaluation, paths.confusion])  # before the evaluation's work
    with locked(paths.root, "cnnspec evaluate"):
        return _evaluate_locked(run, which, split)


def _evaluate_locked(run: str | Path, which: str, split: str) -> dict[str, Any]:
    import torch

    from cnnspec.errors import DataError
    from cnnspec.metrics import classify
    from cnnspec.preprocess import preprocessing_for
    from cnnspec.rundir.reader import load_trained, open_run
    from cnnspec.training.datasets import load_data
    from cnnspec.training.evaluation import confusion_matrix, evaluate_model, per_class_accuracy, plot_confusion
    from cnnspec.training.memory import ensure_evaluation_fits
    from cnnspec.training.precision import resolve
    from cnnspec.training.records import write_json

    opened = open_run(run)  # run.json's rules, and spec.yaml still the network the weights were trained as
    spec, info, paths = opened.spec, opened.info, opened.paths
    precision = resolve(spec.train)
    batch_size = (spec.data.eval_batch_size or 2 * spec.data.batch_size) if spec.data else 256
    # What evaluating needs (the weights, one batch's forward pass, the dataset), not what training would.
    ensure_evaluation_fits(spec, opened.graph, precision.device, batch_size)
    trained = load_trained(opened, which)
    data = load_data(spec, need_train=False)
    source = data.test if split == "test" else data.val
    if source is None:
        raise DataError(
            f"{spec.data.dataset.name if spec.data else 'the dataset'} has no {split} split to evaluate on",
            hint=_missing_split_hint(spec, split, data),
        )
    if data.class_names != info.class_names:
        raise DataError("the dataset's classes differ from the ones this run was trained on")
    model = trained.model.to(precision.device)
    # The run's preprocessing (data.resize, the evaluation form of its crops, run.json's mean/std):
    # the definition export records in the ONNX file and predict applies.
    preprocessing = preprocessing_for(spec, info.mean, info.std)

    def prepare(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(preprocessing.prepare(images.cpu().numpy())).to(images.device)

    tta = spec.evaluate.tta
    result = evaluate_model(
        model,
        source,
        prepare,
        batch_size=batch_size,
        precision=precision,
        keep_scores=True,
        tta=tta,
        tta_pixels=spec.evaluate.translate_pixels,
    )
    k = len(info.class_names)
    matrix = confusion_matrix(result.labels, result.predictions, k)
    per_class = per_class_accuracy(matrix)
    assert result.scores is not None  # kept above
    figures = classify(result.labels.numpy(), result.predictions.numpy(), info.class_names, result.scores.numpy())
    report: dict[str, Any] = {
        "split": split,
        "weights": trained.weights,
        "images": len(result.labels),
        "accuracy": result.accuracy,
        "loss": result.loss,
        # evaluate.tta: the figures average the logits over these views; the exported model is one pass
        **({"tta": list(tta)} if tta else {}),
        **({"tta_translate_pixels": spec.evaluate.translate_pixels} if "translate" in tta else {}),
        "per_class_accuracy": dict(zip(info.class_names, per_class, strict=True)),
        "confusion_matrix": matrix.tolist(),
        # precision, recall, F1 per class and their macro averages, top-5 (cnnspec/metrics.py)
        **{
            key: value
            for key, value in figures.to_json().items()
            if key not in ("images", "accuracy", "confusion_matrix")
        },
    }
    write_json(paths, paths.evaluation, report)
    plot_confusion(
        matrix,
        info.class_names,
        paths,
        f"{info.spec_name}: {split} ({trained.weights} weights)",
    )
    return report


def _missing_split_hint(spec: Spec, split: str, data: Any) -> str:
    """How the split evaluate was asked for comes to be, and the split there is instead (if any)."""
    other = "val" if split == "test" else "test"
    if spec.data is not None and spec.data.dataset.name == "image_folder":
        how = f"add ROOT/{split}/CLASS/* images (ones the model did not train on)"
    elif split == "val":
        how = "the run trained with data.val_split 0: it held no images out of its training set"
    else:
        how = "the dataset has no test split"
    return f"{how}; or use --split {other}, the split it has" if getattr(data, other) is not None else how
