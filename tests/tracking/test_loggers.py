"""A logger whose library is missing or broken: one line, and the run trains without it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.tracking._helpers import Lines, result, spec_file, train


def test_a_missing_library_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # Python's own "not importable" marker
    lines = Lines()
    out = train(spec_file(tmp_path), tmp_path / "run", "train.loggers=[mlflow]", reporter=lines)
    assert lines.warnings() == [
        "warning: train.loggers names mlflow, which is not installed: pip install 'cnnspec[track]'; training without it"
    ]
    assert result(out)["epochs"] == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_a_broken_install_warns_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "site" / "mlflow"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('half-installed mlflow')\n")
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    lines = Lines()
    out = train(spec_file(tmp_path), tmp_path / "run", "train.loggers=[mlflow]", reporter=lines)
    assert lines.warnings() == [
        "warning: mlflow logging failed (RuntimeError: half-installed mlflow); training goes on without it"
    ]
    assert result(out)["epochs"] == 1


def test_each_logger_is_named_once(tmp_path: Path) -> None:
    import cnnspec

    with pytest.raises(cnnspec.SpecError, match="tensorboard is named more than once"):
        cnnspec.train(spec_file(tmp_path), overrides=["train.loggers=[tensorboard, tensorboard]"], progress=False)
