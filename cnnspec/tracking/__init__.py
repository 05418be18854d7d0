"""Experiment tracking: the loggers `train.loggers` names, and run directories listed and compared.

- `loggers.py`: the loggers of a spec (`loggers_for`), each a `Callback` behind a guard that turns
  its first failure into one warning line and stops logging to it; training goes on.
- `tensorboard_logger.py`, `mlflow_logger.py`: one module per tracker, on its own library.
- `params.py`: the resolved spec flattened into the hyperparameters both trackers record.
- `runs.py`: `list_runs` (the rows `cnnspec runs` prints), `compare_runs` (`cnnspec runs compare`).
- `report.py`: the text, JSON and Markdown of both; `plot.py`: the overlaid curves.

This package imports no torch at import time; the loggers' libraries are imported when a logger is
made (docs/tracking.md).
"""
