"""MLflow: one MLflow run per run directory, through `mlflow.tracking.MlflowClient` (no global active run).

Where: `train.mlflow.tracking_uri`, else MLFLOW_TRACKING_URI, else an SQLite store `mlflow.db` in the
run directory's parent folder (runs/mlflow.db for runs/NAME), artifacts in `mlartifacts/` beside it.
The experiment is `train.mlflow.experiment`, else the spec's name; the MLflow run is named after the
run directory and tagged with its absolute path (`cnnspec.run_dir`), so `--resume` continues it.

Logged: the resolved spec's settings as params (cnnspec.tracking.params), each metrics.jsonl record as
metrics at step = epoch, the test figures, and the artifacts spec.yaml, metrics.jsonl,
result.json, curves.png, confusion_matrix.png and model.onnx when the run has one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnspec.tracking.loggers import Logger
from cnnspec.tracking.params import hyperparameters, scalar

if TYPE_CHECKING:
    from cnnspec.spec.model import Spec
    from cnnspec.training.callbacks import TestEnd, TrainStart

RUN_DIR_TAG = "cnnspec.run_dir"
ARTIFACTS = ("spec.yaml", "metrics.jsonl", "result.json", "curves.png", "model.onnx")
BATCH = 100  # MLflow takes at most 100 params in one log_batch


def default_store(run: Path) -> tuple[str, str]:
    """The store a run logs to when neither train.mlflow.tracking_uri nor MLFLOW_TRACKING_URI says:
    (the tracking URI, the artifact location of an experiment made there)."""
    folder = run.resolve().parent
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "mlartifacts").as_uri()


class MlflowLogger(Logger):
    """A Logger (a Callback): the mlflow logger's hooks (called through `cnnspec.tracking.loggers.Guarded`)."""

    def __init__(self, spec: Spec, run: Path) -> None:
        from mlflow.entities import Metric, Param  # fails here when mlflow is broken
        from mlflow.tracking import MlflowClient

        self._client_class, self._metric, self._param = MlflowClient, Metric, Param
        self.spec, self.run = spec, run
        given = spec.train.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self.uri: str = given or default_store(run)[0]
        self.artifact_location: str | None = None if given else default_store(run)[1]
        self.experiment = spec.train.mlflow.experiment or spec.name
        self.client: Any = None
        self.run_id: str | None = None

    def on_train_start(self, start: TrainStart) -> None:
        client = self.client = self._client_class(tracking_uri=self.uri)
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = (
            found.experiment_id
            if found is not None
            else client.create_experiment(self.experiment, artifact_location=self.artifact_location)
        )
        where = str(self.run.resolve())
        earlier = self._earlier_run(experiment_id, where) if start.epoch > 0 else None
        if earlier is not None:  # a resume: the same MLflow run goes on
            self.run_id = earlier.info.run_id
            client.update_run(self.run_id, status="RUNNING")
            logged = set(earlier.data.params)
        else:
            made = client.create_run(experiment_id, run_name=self.run.resolve().name, tags={RUN_DIR_TAG: where})
            self.run_id, logged = made.info.run_id, set()
        # Params cannot change once logged: a resume with other settings keeps the first values.
        params = [
            self._param(key, str(scalar(value)))
            for key, value in hyperparameters(self.spec).items()
            if key not in logged
        ]
        for i in range(0, len(params), BATCH):
            client.log_batch(self.run_id, params=params[i : i + BATCH])

    def _earlier_run(self, experiment_id: str, where: str) -> Any:
        if "'" in where or "\\" in where:  # not writable in MLflow's filter syntax: a new MLflow run
            return None
        runs = self.client.search_runs(
            [experiment_id], f"tags.`{RUN_DIR_TAG}` = '{where}'", max_results=1, order_by=["attributes.start_time DESC"]
        )
        return runs[0] if runs else None

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self._metrics(record, step=record["epoch"])

    def on_test_end(self, test: TestEnd) -> None:
        from cnnspec.render.confusion import confusion_figure

        self._metrics({"test_accuracy": test.accuracy, "test_loss": test.loss}, step=0)
        k = len(test.class_names)
        matrix = (test.labels * k + test.predictions).bincount(minlength=k * k).view(k, k)
        figure = confusion_figure(matrix.numpy(), test.class_names, f"{self.spec.name}: test (best weights)")
        figure.tight_layout()
        self.client.log_figure(self.run_id, figure, "confusion_matrix.png")

    def on_train_end(self, result: dict[str, Any]) -> None:
        figures = {k: v for k, v in result.items() if k.startswith("best_") or k in ("wall_seconds", "epochs")}
        self._metrics(figures, step=0)
        for name in ARTIFACTS:
            path = self.run / name
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.end("FINISHED")

    def end(self, status: str) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status)
            self.run_id = None

    def _metrics(self, values: dict[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [
            self._metric(key, float(value), now, step)
            for key, value in values.items()
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
