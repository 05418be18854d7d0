"""Untrained run directories and their exports, shared by the export tests.

Exporting costs a few seconds per model, so each run is exported once per session;
tests treat these files as read-only (tests that change a run make their own).
"""

from __future__ import annotations

import pytest

from cnnspec.deploy.exporter import ExportReport, export_run
from tests.export._export_helpers import RESIZED_NORMALISED, make_run

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    return export_run(make_run(tmp_path_factory, "digits"))


@pytest.fixture(scope="session")
def small_cnn_export(tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    return export_run(make_run(tmp_path_factory, "small_cnn", class_names=CIFAR10))


@pytest.fixture(scope="session")
def resized_export(tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    return export_run(make_run(tmp_path_factory, "tiny_rgb", RESIZED_NORMALISED, class_names=list("abcde")))
