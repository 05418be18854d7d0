"""User-defined layer kinds: examples/plugin-layer installed into a fresh venv, used by validate and train.

The venv sees this interpreter's packages (cnnspec, torch) through --system-site-packages, so
installing the plugin takes seconds and needs no network; the plugin and its entry point exist
only in the venv, so the kinds it adds are found the way a user's installed plugin would be.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin-layer"

CBAM_SPEC = """\
name: digits-cbam
model:
  input: {channels: 1, height: 8, width: 8}
  layers:
    - conv2d: {out_channels: 16, kernel_size: 3, padding: 1}
    - relu
    - cbam: {id: attention, reduction: 4, kernel_size: 3}
    - maxpool2d: {kernel_size: 2}
    - flatten
    - linear: {out_features: 10}
data:
  dataset: {name: digits}
  batch_size: 64
optimizer: {name: adamw, lr: 0.01}
train: {epochs: 3, seed: 0}
"""

# validate in the venv, then report which heavy modules it imported (as tests/cli/test_no_torch.py does).
PROBE = """
import json, sys
sys.argv = ["cnnspec", *json.loads(sys.argv[1])]
from cnnspec.cli import run  # main() would end the process before the probe reads it
try:
    run()
    code = 0
except SystemExit as exc:
    code = exc.code
print("PROBE", json.dumps({"code": code, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


def _package(tmp: Path, name: str, module: str, body: str, entry: str) -> Path:
    """A minimal installable plugin package named `name` whose module `module` holds `body`."""
    folder = tmp / name
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(textwrap.dedent(body), encoding="utf-8")
    (folder / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['setuptools>=61']\nbuild-backend = 'setuptools.build_meta'\n"
        f"[project]\nname = '{name}'\nversion = '1.0'\n"
        f"[project.entry-points.'cnnspec.layers']\n{entry}\n"
        f"[tool.setuptools]\npackages = ['{module}']\n",
        encoding="utf-8",
    )
    return folder


class Venv:
    def __init__(self, root: Path):
        # No pip of its own: this interpreter's pip installs into it (`pip --python`), building with
        # this interpreter's setuptools, so nothing is fetched.
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)], check=True)
        self.python = root / "bin" / "python"

    def install(self, source: Path, tmp: Path) -> None:
        # A copy: pip builds in the source tree, which would leave build files in the repository.
        copy = tmp / f"src-{source.name}"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(self.python),
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                str(copy),
            ],
            check=True,
            capture_output=True,
        )

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), *args], cwd=cwd, capture_output=True, text=True, timeout=600)

    def cnnspec(self, *args: str, cwd: Path) -> tuple[int, bool, str]:
        """Exit code, whether torch was imported, and stderr of `cnnspec ARGS` in the venv."""
        proc = self.run("-c", PROBE, json.dumps(list(args)), cwd=cwd)
        line = next(x for x in proc.stderr.splitlines() if x.startswith("PROBE "))
        probe = json.loads(line.removeprefix("PROBE "))
        return probe["code"], probe["torch"], proc.stderr


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    tmp = tmp_path_factory.mktemp("plugin")
    env = Venv(tmp / "venv")
    env.install(EXAMPLE, tmp)
    return env


def test_validate_knows_the_plugin_kind_without_importing_torch(venv: Venv, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(CBAM_SPEC, encoding="utf-8")
    code, torch_imported, err = venv.cnnspec("validate", "spec.yaml", cwd=tmp_path)
    assert code == 0, err
    assert not torch_imported
    code, _, err = venv.cnnspec("summary", "spec.yaml", "--format", "json", cwd=tmp_path)
    assert code == 0, err
    schema = json.loads(venv.run("-m", "cnnspec", "schema", cwd=tmp_path).stdout)
    assert "cbam" in json.dumps(schema)  # editors complete the plugin kind too


def test_a_plugin_kind_is_unknown_where_the_plugin_is_not_installed(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(CBAM_SPEC, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "cnnspec", "validate", "spec.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "spec.yaml:7:7: error: unknown layer kind 'cbam'" in proc.stderr


def test_the_plugin_fields_and_shapes_are_checked_and_located_like_built_in_ones(venv: Venv, tmp_path: Path) -> None:
    bad = CBAM_SPEC.replace(
        "{id: attention, reduction: 4, kernel_size: 3}", "{id: attention, reduction: 40, kernal_size: 3}"
    )
    (tmp_path / "spec.yaml").write_text(bad, encoding="utf-8")
    code, _, err = venv.cnnspec("validate", "spec.yaml", cwd=tmp_path)
    assert code == 1
    assert "spec.yaml:7:44: error: unknown key 'kernal_size' in model.layers[2].cbam" in err
    assert "did you mean 'kernel_size'?" in err
    (tmp_path / "spec.yaml").write_text(bad.replace("kernal_size", "kernel_size"), encoding="utf-8")
    code, _, err = venv.cnnspec("validate", "spec.yaml", cwd=tmp_path)
    assert code == 1
    assert "spec.yaml:7:40: error: cbam with reduction 40 on 16 channels leaves no hidden unit" in err
    assert "hint: use a reduction of at most 16" in err


def test_train_trains_a_spec_that_uses_the_plugin_kind(venv: Venv, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(CBAM_SPEC, encoding="utf-8")
    proc = venv.run("-m", "cnnspec", "train", "spec.yaml", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    # Three epochs on digits with the attention layer in the middle: 0.922–0.969 over seeds 0–7
    # (2-core CPU, torch 2.14.1); the floor sits well below that spread.
    assert result["test_accuracy"] >= 0.8
    weights = subprocess.run(
        [
            str(venv.python),
            "-c",
            "from safetensors.numpy import load_file; import sys; print(sorted(load_file(sys.argv[1])))",
            str(tmp_path / "run" / "checkpoints" / "best.safetensors"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'attention.mlp.0.weight'" in weights and "'attention.spatial.weight'" in weights


def test_the_plugin_passes_its_own_tests(venv: Venv) -> None:
    proc = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests"), cwd=EXAMPLE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_a_plugin_that_takes_a_built_in_name_is_refused_naming_both(tmp_path: Path) -> None:
    env = Venv(tmp_path / "venv")
    body = """
    from typing import ClassVar
    from cnnspec.layers import LayerKind, register

    @register
    class MyRelu(LayerKind):
        kind: ClassVar[str] = "relu"
    """
    env.install(_package(tmp_path, "shadow-relu", "shadow_relu", body, "relu = 'shadow_relu'"), tmp_path)
    (tmp_path / "spec.yaml").write_text(
        "name: x\nmodel:\n  input: {channels: 1, height: 4, width: 4}\n  layers: [relu]\n"
    )
    code, _, err = env.cnnspec("validate", "spec.yaml", cwd=tmp_path)
    assert code == 1
    assert (
        "error: layer plugin 'relu = shadow_relu' (from shadow-relu 1.0): "
        "its layer kind 'relu' is already defined by cnnspec.layers.elementwise.ReLU"
    ) in err
    assert "hint: fix or uninstall shadow-relu" in err
    assert "Traceback" not in err  # a real process's stderr: a traceback would show here


def test_a_plugin_rule_that_raises_is_a_located_error_naming_the_plugin(tmp_path: Path) -> None:
    env = Venv(tmp_path / "venv")
    body = """
    from typing import ClassVar
    from cnnspec.layers import LayerKind, register

    @register
    class Broken(LayerKind):
        kind: ClassVar[str] = "broken"

        def output_shape(self, inputs):
            raise ValueError("oops from the plugin")
    """
    env.install(_package(tmp_path, "broken-kind", "broken_kind", body, "broken = 'broken_kind'"), tmp_path)
    (tmp_path / "spec.yaml").write_text(
        "name: x\nmodel:\n  input: {channels: 1, height: 4, width: 4}\n  layers:\n    - relu\n    - broken\n"
    )
    code, _, err = env.cnnspec("validate", "spec.yaml", cwd=tmp_path)
    assert code == 1
    assert (
        "spec.yaml:6:7: error: layer kind 'broken' (plugin 'broken = broken_kind' (broken-kind 1.0)) "
        "failed to compute its shape or counts: ValueError: oops from the plugin"
    ) in err
    assert "Traceback" not in err
