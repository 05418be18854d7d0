"""A typo in `inputs:` is one error; the layer it meant is not also "never used" (issue 15, item 9)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tests.cli_helpers import run_cli
from tests.conftest import SPECS

POOL = "    - adaptive_avgpool2d: {id: avgpool, output_size: 1}"


def _validate(tmp_path: Path, name: str) -> tuple[int, list[str], str]:
    text = (SPECS / "resnet18.yaml").read_text()
    assert POOL in text
    line = POOL.replace("output_size: 1}", f"output_size: 1, inputs: [{name}]}}")
    (tmp_path / "spec.yaml").write_text(text.replace(POOL, line))
    with contextlib.chdir(tmp_path):
        result = run_cli("validate", "spec.yaml")
    number = text.splitlines().index(POOL) + 1
    return result.exit_code, result.stderr.splitlines(), f"spec.yaml:{number}:{line.index('[') + 1}"


def test_a_misspelt_group_id_in_inputs_is_one_error_without_a_warning_about_the_group(tmp_path: Path) -> None:
    code, lines, where = _validate(tmp_path, "layr4")
    assert code == 1
    assert lines == [f"{where}: error: unknown layer id 'layr4' in inputs", "  hint: did you mean 'layer4'?"]


def test_the_spelt_id_passes_without_warnings(tmp_path: Path) -> None:
    code, lines, _ = _validate(tmp_path, "layer4")
    assert (code, lines) == (0, [])
